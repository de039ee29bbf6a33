"""The console's one renderer: reply parts as terminal text. Pure.

The console is a terminal: every piece of user or backend text goes through
`neutralise_controls`, so no escape sequence (colours, OSC 8 links, titles), bell or NUL it
carries reaches stdout, and bidi overrides show as `[U+202E]`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot.core.messages import Actions, Failure, Fields, File, Image, Link, Notice, Part, Text
from bot.core.outbound_text import neutralise_controls as safe

_ICONS = {"info": "ℹ", "success": "✔", "warning": "⚠", "progress": "…"}


def render_failure(part: Failure) -> str:
    """`✖ code: message (request req_…)` and the hint on the next line."""
    line = f"✖ {safe(part.code)}: {safe(part.message)}"
    if part.request_id:
        line += f" (request {safe(part.request_id)})"
    if part.hint:
        line += f"\n  → {safe(part.hint)}"
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
        return safe(part.markdown)
    if isinstance(part, Notice):
        return f"{_ICONS.get(part.level, '•')} {safe(part.text)}"
    if isinstance(part, Failure):
        return render_failure(part)
    if isinstance(part, Fields):
        rows = [(safe(label), safe(value)) for label, value in part.rows]
        width = max((len(label) for label, _ in rows), default=0)
        lines = [safe(part.title)] + [f"  {label.ljust(width)}  {value}" for label, value in rows]
        return "\n".join(lines)
    if isinstance(part, Link):
        line = f"🔗 {safe(part.label)}: {safe(part.url)}"
        if part.expires_at:
            line += f"\n   {render_expiry(part.expires_at)}"
        return line
    if isinstance(part, Image):
        return f"🖼 {safe(str(part.path))}"
    if isinstance(part, File):
        return f"📎 {safe(part.name)}"
    if isinstance(part, Actions):
        return "   " + "  ".join(
            f"[{safe(b.label)}: type `/action {safe(b.action_id)} {safe(b.value)}`]"
            for b in part.buttons
        )
    return safe(str(part))


def render(parts: Sequence[Part]) -> str:
    """All parts, one block each."""
    return "\n".join(render_part(p) for p in parts)
