"""What one Discord message is made of on the way out, and where re-posted messages went."""

from __future__ import annotations

import io
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import discord

from adapters.discord.guard import NO_MENTIONS
from bot.core.messages import MessageRef
from bot.store.message_replacements import MessageReplacementRows

__all__ = ["Outgoing", "RefReplacements"]

_MAX_REPLACEMENTS = 10_000

log = logging.getLogger(__name__)


@dataclass
class Outgoing:
    """One Discord message to send or edit into."""

    content: str = ""
    embeds: list[discord.Embed] = field(default_factory=list)
    view: discord.ui.View | None = None
    # (bytes, filename, alt text); a discord.File is made per attempt since sending consumes it.
    file: tuple[bytes, str, str] | None = None

    def files(self) -> list[discord.File]:
        """A fresh discord.File for the attachment, if any."""
        if self.file is None:
            return []
        data, name, alt = self.file
        return [discord.File(io.BytesIO(data), filename=name, description=alt[:1024] or None)]

    def send_kwargs(self) -> dict[str, Any]:
        """discord.py's send() arguments for this message (no mention can ping)."""
        kwargs: dict[str, Any] = {"embeds": self.embeds, "allowed_mentions": NO_MENTIONS}
        if self.content:
            kwargs["content"] = self.content
        files = self.files()
        if files:
            kwargs["files"] = files
        if self.view is not None:
            kwargs["view"] = self.view
        return kwargs

    def edit_kwargs(self) -> dict[str, Any]:
        """discord.py's edit() arguments: replacing the whole message (no mention can ping)."""
        # view=None and embeds=[] clear what the message had; attachments only when adding one.
        kwargs: dict[str, Any] = {
            "content": self.content or None,
            "embeds": self.embeds,
            "view": self.view,
            "allowed_mentions": NO_MENTIONS,
        }
        if self.file is not None:
            kwargs["attachments"] = self.files()
        return kwargs

    def fill(self) -> Outgoing:
        """Discord rejects an empty message; give it a visible dash instead."""
        if not self.content and not self.embeds and self.file is None:
            self.content = "—"
        return self


class RefReplacements:
    """Messages that had to be posted again (their original could no longer be edited):
    remembered here and kept in the store, so every replica's later edits go to the copy."""

    def __init__(self, rows: MessageReplacementRows | None = None) -> None:
        self._rows = rows
        self._map: OrderedDict[str, MessageRef] = OrderedDict()

    def resolve(self, ref: MessageRef) -> MessageRef:
        """The copy of `ref` this process knows of, else `ref`."""
        return self._map.get(ref.id, ref)

    async def stored(self, ref: MessageRef) -> MessageRef | None:
        """The copy of `ref` the store knows of (posted by any replica), or None."""
        if self._rows is None:
            return None
        try:
            raw = await self._rows.get(ref.platform, ref.id)
            found = MessageRef.model_validate(raw) if raw is not None else None
        except Exception as exc:  # the store is down or the row unreadable: post a copy
            log.warning("could not read the copy of message %s: %s", ref.id, exc)
            return None
        if found is not None:
            self._remember(ref, found)
        return found

    async def replace(self, original: MessageRef, copy: MessageRef) -> None:
        """Later edits of `original` (the ref its poster holds) go to `copy`."""
        self._remember(original, copy)
        if self._rows is None:
            return
        try:
            await self._rows.save(original.platform, original.id, copy.model_dump(mode="json"))
        except Exception as exc:  # this process still knows; other replicas post their own
            log.warning("could not keep the copy of message %s: %s", original.id, exc)

    def _remember(self, original: MessageRef, copy: MessageRef) -> None:
        self._map[original.id] = copy
        self._map.move_to_end(original.id)
        while len(self._map) > _MAX_REPLACEMENTS:
            self._map.popitem(last=False)
