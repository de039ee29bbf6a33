"""What a handler receives: the message, the conversation to answer in, and the bot's parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.core.messages import Conversation, Inbound
from bot.store import CredentialUnreadableError, Owner

if TYPE_CHECKING:
    from bot.core.app import TokenBot
KEY_HINTS = {
    "alltoken": "Set your AllToken key with `/alltoken-key` (a private form) or "
    "`/alltoken-key set sk-at-…` as a slash command or in a direct message.",
    "openmarlin": "Run `/openmarlin register` to sign up (the sign-in link comes to you "
    "privately), or store an existing key privately with `/openmarlin key`.",
    "openclaw_token": "Sign in with `/openclaw-token auth login` (GitHub), "
    "`/openclaw-token auth login --email` or `/openclaw-token auth register` "
    "(email and password go into a private form, never a message).",
}


class MissingKey(Exception):
    """The caller has no stored key for a service."""

    def __init__(self, service: str) -> None:
        self.service = service
        super().__init__(service)


@dataclass
class HandlerContext:
    """One command being handled."""

    inbound: Inbound
    conversation: Conversation
    bot: TokenBot

    @property
    def owner(self) -> Owner:
        """Whose keys, usage and jobs this command uses."""
        return Owner.of(self.inbound)

    async def require_key(self, service: str) -> str:
        """The caller's own key for `service`, or MissingKey (answered privately by the app)."""
        try:
            key = await self.bot.store.get_credential(self.owner, service)
        except CredentialUnreadableError as exc:
            # Stored but undecryptable: say so (and how to fix it), not internal_error.
            from bot.core.keys import report_unreadable_key

            raise await report_unreadable_key(self, exc) from None
        if not key:
            raise MissingKey(service)
        return key
