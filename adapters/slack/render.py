"""The Slack adapter's one renderer: reply parts -> Block Kit. Pure.

Model text goes into `markdown` blocks (Slack renders CommonMark there); everything tokenbot
writes itself (notices, failures, fields, links) becomes mrkdwn sections and context lines.
Every message also gets a plain mrkdwn `text` for notifications and clients without blocks.

Every string that came from a person, a model or a backend is made inert on its way in:
control characters go (`neutralise_controls`), mrkdwn is escaped by `to_mrkdwn`/`escape`,
markdown blocks by `inert_markdown`. The bot's own Slack constructs (dates, links to real
URLs) are built here from explicit parts, never parsed out of text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from adapters.slack.inert import inert_markdown, inert_plain
from adapters.slack.mrkdwn import escape, is_safe_url, link, markdown_target, to_mrkdwn
from bot.core.messages import Actions, Failure, Fields, Image, Link, Notice, Part, Text
from bot.core.outbound_text import neutralise_controls
from bot.core.text_split import clip, split_markdown

__all__ = [
    "LINK_ACTION",
    "SlackMessage",
    "blocks_for",
    "fallback_text",
    "markdown_block",
    "markdown_of",
    "render_messages",
    "slack_date",
    "trailer_blocks",
]

Block = dict[str, Any]

# Slack's limits (docs.slack.dev, Block Kit reference).
MAX_BLOCKS = 50
SECTION_TEXT = 3000
FIELD_TEXT = 2000
FIELDS_PER_SECTION = 10
BUTTON_LABEL = 75
BUTTON_VALUE = 2000
FALLBACK_TEXT = 3000
# One markdown block holds 12,000 characters, and a message's blocks together fail with
# msg_blocks_too_long a little above that: keep each message well below.
MARKDOWN_BUDGET = 11_000
TEXT_CHUNK = 3_900
# URL buttons also send a block action; this id tells the adapter to ignore it.
LINK_ACTION = "tokenbot.link"

_ICONS = {"info": "ℹ️", "success": "✅", "warning": "⚠️", "progress": "⏳"}


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": clip(text, SECTION_TEXT)}


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(inert_plain(text), limit), "emoji": True}


def _esc(text: str) -> str:
    """Text shown as is inside mrkdwn (a code, a label, a title)."""
    return escape(neutralise_controls(text))


def markdown_block(markdown: str) -> Block:
    """A `markdown` block: Slack renders the Markdown itself (bold, code, fences, lists).

    The text is made inert first: it can't mention anyone or hide a link target.
    """
    return {"type": "markdown", "text": inert_markdown(markdown)}


def slack_date(moment: datetime) -> str:
    """A date every reader sees in their own time zone, with a UTC fallback for old clients."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    epoch = int(moment.timestamp())
    fallback = f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return f"<!date^{epoch}^{{date_short_pretty}} {{time}}|{fallback}>"


def _section(text: str) -> Block:
    return {"type": "section", "text": _mrkdwn(text)}


def _context(text: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(text)]}


def _failure(part: Failure) -> list[Block]:
    blocks = [_section(f"❌ *{_esc(part.code)}* — {to_mrkdwn(part.message)}")]
    if part.hint:
        blocks.append(_section(f"💡 {to_mrkdwn(part.hint)}"))
    if part.request_id:
        blocks.append(_context(f"request `{_esc(part.request_id)}`"))
    return blocks


def _fields(part: Fields) -> list[Block]:
    blocks: list[Block] = [_section(f"*{_esc(part.title)}*")]
    cells = [
        {
            "type": "mrkdwn",
            "text": clip(f"*{_esc(label)}*\n{to_mrkdwn(value)}", FIELD_TEXT),
        }
        for label, value in part.rows
    ]
    for start in range(0, len(cells), FIELDS_PER_SECTION):
        section = {"type": "section", "fields": cells[start : start + FIELDS_PER_SECTION]}
        blocks.append(section)
    return blocks


def _link(part: Link) -> list[Block]:
    url = neutralise_controls(part.url)
    section: Block = _section(f"🔗 *{link(url, part.label)}*")
    if is_safe_url(url) and len(url) <= SECTION_TEXT:
        section["accessory"] = {
            "type": "button",
            "action_id": LINK_ACTION,
            "text": _plain("Open", BUTTON_LABEL),
            "url": url,
        }
    blocks = [section]
    if part.expires_at is not None:
        blocks.append(_context(f"⏱ expires {slack_date(part.expires_at)}"))
    return blocks


def _actions(part: Actions) -> list[Block]:
    elements = []
    for button in part.buttons[:25]:
        element: dict[str, Any] = {
            "type": "button",
            "action_id": button.action_id,
            "text": _plain(button.label, BUTTON_LABEL),
            "value": clip(button.value, BUTTON_VALUE),
        }
        if button.style != "default":
            element["style"] = button.style
        elements.append(element)
    return [{"type": "actions", "elements": elements}] if elements else []


def blocks_for(part: Part) -> list[Block]:
    """The blocks of one part."""
    if isinstance(part, Text):
        return [markdown_block(part.markdown)] if part.markdown.strip() else []
    if isinstance(part, Notice):
        return [_section(f"{_ICONS.get(part.level, '•')} {to_mrkdwn(part.text)}")]
    if isinstance(part, Failure):
        return _failure(part)
    if isinstance(part, Fields):
        return _fields(part)
    if isinstance(part, Link):
        return _link(part)
    if isinstance(part, Actions):
        return _actions(part)
    if isinstance(part, Image):
        return [_context(f"🖼 {_esc(part.alt or part.path.name)}")]
    return []


def trailer_blocks(parts: Sequence[Part]) -> list[Block]:
    """A stream's trailer under the text: notices (the usage and cost line) as context lines."""
    blocks: list[Block] = []
    for part in parts:
        if isinstance(part, Notice):
            blocks.append(_context(f"{_ICONS.get(part.level, '•')} {to_mrkdwn(part.text)}"))
        else:
            blocks.extend(blocks_for(part))
    return blocks[:MAX_BLOCKS]


def _link_markdown(part: Link) -> str:
    if is_safe_url(neutralise_controls(part.url)):
        line = f"🔗 [{part.label}]({markdown_target(part.url)})"
    elif not part.url or part.url == part.label or not part.label:
        # Not a web address: shown as text, as the block shows it (mrkdwn.link).
        line = f"🔗 {part.label or part.url}"
    else:
        line = f"🔗 {part.label} ({part.url})"
    if part.expires_at is not None:
        line += f" — expires {part.expires_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
    return line


def markdown_of(parts: Sequence[Part]) -> str:
    """The parts as one Markdown string (stream trailers, plain fallbacks)."""
    lines: list[str] = []
    for part in parts:
        if isinstance(part, Text):
            lines.append(part.markdown)
        elif isinstance(part, Notice):
            lines.append(f"{_ICONS.get(part.level, '•')} {part.text}")
        elif isinstance(part, Failure):
            line = f"❌ **{part.code}** — {part.message}"
            if part.request_id:
                line += f" (request `{part.request_id}`)"
            if part.hint:
                line += f"\n💡 {part.hint}"
            lines.append(line)
        elif isinstance(part, Fields):
            rows = "\n".join(f"• **{label}**: {value}" for label, value in part.rows)
            lines.append(f"**{part.title}**\n{rows}")
        elif isinstance(part, Link):
            lines.append(_link_markdown(part))
        elif isinstance(part, Image):
            lines.append(f"🖼 {part.alt or part.path.name}")
    return "\n\n".join(line for line in lines if line)


def fallback_text(parts: Sequence[Part]) -> str:
    """The message's `text`: what notifications and block-less clients show (mrkdwn)."""
    text = to_mrkdwn(markdown_of(parts)).strip()
    return clip(text, FALLBACK_TEXT) or " "


@dataclass
class SlackMessage:
    """One message to post: blocks plus the fallback text."""

    blocks: list[Block] = field(default_factory=list)
    text: str = " "
    markdown_chars: int = 0


def _split_parts(parts: Sequence[Part]) -> list[Part]:
    """Long texts become several Text parts (fence-safe), so no block is over a limit."""
    out: list[Part] = []
    for part in parts:
        if isinstance(part, Text):
            # Controls first: a shown `[U+202E]` is longer than the character it replaces.
            markdown = neutralise_controls(part.markdown)
            if len(markdown) > TEXT_CHUNK:
                out.extend(Text(markdown=chunk) for chunk in split_markdown(markdown, TEXT_CHUNK))
            else:
                out.append(Text(markdown=markdown))
        else:
            out.append(part)
    return out


def render_messages(parts: Sequence[Part]) -> list[SlackMessage]:
    """The parts as one or more messages, each within Slack's block and size limits."""
    messages: list[SlackMessage] = []
    current = SlackMessage()
    members: list[Part] = []

    def close() -> None:
        nonlocal current, members
        if current.blocks:
            current.text = fallback_text(members)
            messages.append(current)
        current, members = SlackMessage(), []

    for part in _split_parts(parts):
        blocks = blocks_for(part)
        if not blocks:
            continue
        size = sum(len(b["text"]) for b in blocks if b["type"] == "markdown")
        too_many = len(current.blocks) + len(blocks) > MAX_BLOCKS
        too_long = current.markdown_chars + size > MARKDOWN_BUDGET
        if current.blocks and (too_many or too_long):
            close()
        current.blocks.extend(blocks[:MAX_BLOCKS])
        current.markdown_chars += size
        members.append(part)
    close()
    return messages or [SlackMessage(blocks=[], text="…")]
