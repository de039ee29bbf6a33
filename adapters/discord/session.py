"""One interaction's 15-minute webhook: its token, expiry, and what became of its original response.

A slash command's replies go through the interaction webhook while its token is valid. The
token, its expiry and the original response's id are also written into `Destination.extras`,
so a job resumed after a restart can keep using the webhook, and knows when it must stop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal

import discord

log = logging.getLogger(__name__)

TOKEN_LIFETIME_S = 15 * 60
# Stop using a token a little before Discord does, so a slow request never races the expiry.
EXPIRY_MARGIN_S = 30.0
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
_MAX_SESSIONS = 5_000

# unanswered: nothing sent yet (a modal may still be opened)
# deferred:   "thinking…" is showing; the first reply replaces it
# used:       the original response has content; further replies are follow-ups
# gone:       the original response was deleted or was a modal; replies are follow-ups
# modal:      answered with a modal, so this token can't carry messages
OriginalState = Literal["unanswered", "deferred", "used", "gone", "modal"]

# Keys of Destination.extras (all strings).
X_INTERACTION = "interaction_id"
X_APPLICATION = "application_id"
X_TOKEN = "interaction_token"
X_EXPIRES = "interaction_expires_at"
X_ORIGINAL = "original_message_id"
X_EPHEMERAL = "deferred_ephemeral"
X_UPLOAD_LIMIT = "upload_limit"


@dataclass(eq=False)
class InteractionSession:
    """The live state of one interaction's replies, shared by every Conversation that uses it."""

    interaction_id: str
    application_id: int
    token: str
    expires_at: float  # unix seconds
    original_id: str | None = None
    state: OriginalState = "deferred"
    ephemeral_defer: bool = False
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    interaction: discord.Interaction | None = None
    # For a button click: the message the button is on (the click's own "original" message).
    component_message_id: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @classmethod
    def of(cls, interaction: discord.Interaction, state: OriginalState) -> InteractionSession:
        """A session for a live interaction."""
        message = getattr(interaction, "message", None)
        return cls(
            interaction_id=str(interaction.id),
            application_id=interaction.application_id,
            token=interaction.token,
            expires_at=interaction.expires_at.timestamp(),
            state=state,
            upload_limit=int(getattr(interaction, "filesize_limit", 0) or DEFAULT_UPLOAD_LIMIT),
            interaction=interaction,
            component_message_id=str(message.id)
            if message is not None and interaction.type is discord.InteractionType.component
            else None,
        )

    @classmethod
    def from_extras(cls, extras: dict[str, str]) -> InteractionSession | None:
        """Rebuild a session from a saved destination (no live interaction object)."""
        try:
            return cls(
                interaction_id=extras[X_INTERACTION],
                application_id=int(extras[X_APPLICATION]),
                token=extras[X_TOKEN],
                expires_at=float(extras[X_EXPIRES]),
                original_id=extras.get(X_ORIGINAL) or None,
                # A saved session's original response was claimed by the job that saved it, or
                # is still "thinking…"; either way the first reply may (re)write it.
                state="deferred" if extras.get(X_ORIGINAL) else "used",
                ephemeral_defer=extras.get(X_EPHEMERAL) == "1",
                upload_limit=int(extras.get(X_UPLOAD_LIMIT) or DEFAULT_UPLOAD_LIMIT),
            )
        except (KeyError, ValueError):
            return None

    def extras(self) -> dict[str, str]:
        """What a Destination must carry to reply through this interaction later."""
        out = {
            X_INTERACTION: self.interaction_id,
            X_APPLICATION: str(self.application_id),
            X_TOKEN: self.token,
            X_EXPIRES: f"{self.expires_at:.3f}",
            X_UPLOAD_LIMIT: str(self.upload_limit),
        }
        if self.original_id:
            out[X_ORIGINAL] = self.original_id
        if self.ephemeral_defer:
            out[X_EPHEMERAL] = "1"
        return out

    def usable(self, now: float) -> bool:
        """Whether replies may still go through this interaction's webhook."""
        return self.state != "modal" and now < self.expires_at - EXPIRY_MARGIN_S

    def expire(self) -> None:
        """Discord refused the token (expired or revoked): stop using it."""
        self.expires_at = 0.0

    def webhook(self, client: discord.Client) -> discord.Webhook:
        """The interaction's follow-up webhook (type 3: it may send ephemeral messages)."""
        if self.interaction is not None:
            return self.interaction.followup
        # The same construction discord.py uses for Interaction.followup; it needs the
        # client's connection state so views and ephemeral flags are accepted after a restart.
        return discord.Webhook.from_state(
            data={"id": self.application_id, "type": 3, "token": self.token},
            state=client._connection,
        )


class SessionRegistry:
    """Live sessions by interaction id, so a job shares its command's session; bounded."""

    def __init__(self, limit: int = _MAX_SESSIONS) -> None:
        self._sessions: OrderedDict[str, InteractionSession] = OrderedDict()
        self._limit = limit

    def add(self, session: InteractionSession, now: float) -> None:
        """Remember a session; forget expired ones (and the oldest beyond the limit)."""
        self._sessions[session.interaction_id] = session
        self._sessions.move_to_end(session.interaction_id)
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if len(self._sessions) <= self._limit and oldest.expires_at > now:
                break
            self._sessions.popitem(last=False)

    def get(self, interaction_id: str) -> InteractionSession | None:
        """The live session for this interaction, if this process has it."""
        return self._sessions.get(interaction_id)

    def __len__(self) -> int:
        return len(self._sessions)
