"""The console's one renderer: reply parts as terminal text. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot.messages import Actions, Failure, Fields, Image, Link, Notice, Part, Text

_ICONS = {"info": "ℹ", "success": "✔", "warning": "⚠", "progress": "…"}


def render_failure(part: Failure) -> str:
    """`✖ code: message (request req_…)` and the hint on the next line."""
    line = f"✖ {part.code}: {part.message}"
    if part.request_id:
        line += f" (request {part.request_id})"
    if part.hint:
        line += f"\n  → {part.hint}"
    return line


def render_expiry(expires_at: datetime, now: datetime | None = None) -> str:
    """`expires 2026-11-21 10:00 UTC (in 59 min)`."""
    now = now or datetime.now(UTC)
    left = int((expires_at - now).total_seconds())
    if left <= 0:
        rel = "expired"
    elif left < 3600:
        rel = f"in {max(left // 60, 1)} min"
    else:
        rel = f"in {left // 3600} h {left % 3600 // 60} min"
    return f"expires {expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({rel})"


def render_part(part: Part) -> str:
    """One part as text."""
    if isinstance(part, Text):
        return part.markdown
    if isinstance(part, Notice):
        return f"{_ICONS.get(part.level, '•')} {part.text}"
    if isinstance(part, Failure):
        return render_failure(part)
    if isinstance(part, Fields):
        width = max((len(label) for label, _ in part.rows), default=0)
        lines = [part.title] + [f"  {label.ljust(width)}  {value}" for label, value in part.rows]
        return "\n".join(lines)
    if isinstance(part, Link):
        line = f"🔗 {part.label}: {part.url}"
        if part.expires_at:
            line += f"\n   {render_expiry(part.expires_at)}"
        return line
    if isinstance(part, Image):
        return f"🖼 {part.path}"
    if isinstance(part, Actions):
        return "   " + "  ".join(
            f"[{b.label}: type `/action {b.action_id} {b.value}`]" for b in part.buttons
        )
    return str(part)


def render(parts: Sequence[Part]) -> str:
    """All parts, one block each."""
    return "\n".join(render_part(p) for p in parts)
