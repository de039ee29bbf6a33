"""What one Discord message is made of on the way out, and where re-posted messages went."""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass, field

import discord

from bot.core.messages import MessageRef

__all__ = ["Outgoing", "RefReplacements"]

_MAX_REPLACEMENTS = 10_000


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

    def fill(self) -> Outgoing:
        """Discord rejects an empty message; give it a visible dash instead."""
        if not self.content and not self.embeds and self.file is None:
            self.content = "—"
        return self


class RefReplacements:
    """Messages that had to be posted again (their original could no longer be edited)."""

    def __init__(self) -> None:
        self._map: OrderedDict[str, MessageRef] = OrderedDict()

    def resolve(self, ref: MessageRef) -> MessageRef:
        """The current copy of `ref`."""
        return self._map.get(ref.id, ref)

    def replace(self, old: MessageRef, new: MessageRef) -> None:
        """Later edits of `old` go to `new`."""
        self._map[old.id] = new
        while len(self._map) > _MAX_REPLACEMENTS:
            self._map.popitem(last=False)
