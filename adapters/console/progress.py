"""Progress bars for images, videos and OpenMarlin tasks on a terminal.

A job posts its progress message once and edits it as the status changes. On a terminal the
console prints the first version, then shows each edit as a bar under the prompt instead of a
new line: the percent when the backend's text reports one, else elapsed / expected time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bot.core.messages import Notice, Part
from bot.core.outbound_text import neutralise_controls

# Typical durations (seconds) of the real backends, for the bar when no percent is reported.
REAL_EXPECTED_S: Mapping[str, float] = {"image": 30.0, "video": 120.0, "task": 60.0}
_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)\s?%")
_STATUS = re.compile(r"(?:\((?P<paren>[a-z_ ]+)\)|— (?P<dash>[a-z_]+) —|Video (?P<video>[a-z_]+))")
_BAR_CELLS = 20


def progress_kind(parts: Sequence[Part]) -> tuple[str, str] | None:
    """(kind, text) of a progress message about an image, a video or a task; else None."""
    for part in parts:
        if not isinstance(part, Notice) or part.level != "progress":
            continue
        text = part.text
        if "OpenMarlin task" in text:
            return "task", text
        # The leading words, not the prompt after them (a prompt may say "video").
        if text.startswith("🎬 Video"):
            return "video", text
        if text.startswith("🖼") or "Generating an image" in text:
            return "image", text
    return None


@dataclass
class Tracked:
    """One progress message shown as a bar."""

    kind: str
    text: str
    started: float
    expected_s: float | None

    @property
    def percent(self) -> float | None:
        """The percent the backend's text reports, if any."""
        found = _PERCENT.search(self.text)
        return min(float(found.group(1)), 100.0) if found else None

    @property
    def status(self) -> str:
        """queued, in_progress, processing … as the message says."""
        found = _STATUS.search(self.text)
        if not found:
            return ""
        return next(g for g in found.groups() if g)


def _bar(fraction: float) -> str:
    filled = round(max(0.0, min(fraction, 1.0)) * _BAR_CELLS)
    return "█" * filled + "░" * (_BAR_CELLS - filled)


class ProgressBoard:
    """The progress messages of running jobs, by message id."""

    def __init__(
        self,
        expected_s: Mapping[str, float] = REAL_EXPECTED_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.expected_s = dict(expected_s)
        self.clock = clock
        self.items: dict[str, Tracked] = {}
        # Called when a bar appears or goes, so the prompt can show or hide its toolbar.
        self.on_change: Callable[[], None] | None = None

    def update(self, message_id: str, parts: Sequence[Part]) -> bool:
        """Note a message or its edit; True when it is a bar's update that need not be printed."""
        found = progress_kind(parts)
        known = self.items.get(message_id)
        if found is None:
            if known is not None:
                del self.items[message_id]  # done, failed or cancelled: the edit is printed
                self._changed()
            return False
        kind, text = found
        if known is not None:
            known.text = text
            return True
        self.items[message_id] = Tracked(kind, text, self.clock(), self.expected_s.get(kind))
        self._changed()
        return False

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def lines(self) -> list[str]:
        """One line per bar: `🎬 video ████░░░░ 12 s / ~60 s  in_progress`."""
        now = self.clock()
        return [self.line(item, now) for item in self.items.values()]

    def line(self, item: Tracked, now: float) -> str:
        """One bar."""
        elapsed = max(now - item.started, 0.0)
        percent = item.percent
        if percent is not None:
            bar, figures = _bar(percent / 100), f"{percent:.0f} %"
        elif item.expected_s:
            # Past the expected time the bar waits just short of full: it is not done yet.
            bar = _bar(min(elapsed / item.expected_s, 0.97))
            figures = f"{elapsed:.0f} s / ~{item.expected_s:.0f} s"
        else:
            bar, figures = _bar(0.0), f"{elapsed:.0f} s"
        icon = {"image": "🖼", "video": "🎬", "task": "⚙"}.get(item.kind, "…")
        status = neutralise_controls(item.status)
        return f"{icon} {item.kind:<5} {bar} {figures}  {status}".rstrip()
