"""The Discord adapter's one renderer: reply parts -> message content, embeds and buttons. Pure.

Every piece of user or backend text passes through `inert` first: no terminal controls, and
`@everyone` / `@here` shown literally (allowed_mentions already stops pings; this keeps them from
even looking live). Text, notices, links and image captions become Markdown content; `Fields` become an embed with
one field per row; a `Failure` becomes a red embed with its code, request id and next step;
`Actions` become button specs whose custom_id routes the click back to the core. Building the
`discord.ui.View` itself is left to `views.py` (a View needs a running event loop).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

import discord

from bot.core.messages import Actions, Button, Failure, Fields, Image, Link, Notice, Part, Text
from bot.core.outbound_text import neutralise_controls
from bot.core.text_split import clip

__all__ = [
    "CUSTOM_ID_PREFIX",
    "MAX_CONTENT",
    "Rendered",
    "custom_id",
    "discord_timestamp",
    "inert",
    "parse_custom_id",
    "render",
    "render_markdown",
]

MAX_CONTENT = 2000  # characters of message content
MAX_EMBEDS = 10  # per message
MAX_FIELDS = 25  # per embed
MAX_BUTTONS = 25  # five rows of five
MAX_TITLE = 256
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 1024
MAX_DESCRIPTION = 4096
MAX_CUSTOM_ID = 100
MAX_LABEL = 80

FAILURE_COLOUR = 0xED4245  # Discord's red
FIELDS_COLOUR = 0x5865F2  # Discord's blurple

# Every button tokenbot sends carries this prefix, so the client can tell its clicks apart.
CUSTOM_ID_PREFIX = "tb:"

_ICONS = {"info": "ℹ️", "success": "✅", "warning": "⚠️", "progress": "⏳"}
# An empty embed field value is rejected by Discord; a zero-width space shows as blank.
_BLANK = "\u200b"
_INLINE_MAX = 40
# Mass mentions in any case: a zero-width space after the `@` keeps them readable but inert.
_MASS_MENTION = re.compile(r"@(everyone|here)", re.IGNORECASE)
# Characters that would end a `<url>` early or break the Markdown link around it.
_URL_UNSAFE = re.compile(r"[\s<>]")


@dataclass
class Rendered:
    """What one Discord message is made of."""

    content: str = ""
    embeds: list[discord.Embed] = field(default_factory=list)
    buttons: list[Button] = field(default_factory=list)


def inert(text: str) -> str:
    """User or backend text made harmless: no control characters, `@everyone` / `@here` literal.

    Controls go first, so `@\\x00everyone` cannot turn into a live `@everyone` afterwards.
    """
    return _MASS_MENTION.sub("@\u200b\\1", neutralise_controls(text))


def _inert_url(url: str) -> str:
    """A URL that stays one `<link>`: controls dropped; whitespace, `<`, `>` and mass mentions
    percent-encoded (an `@` in a URL's path means the same as `%40`)."""
    url = _URL_UNSAFE.sub(lambda m: quote(m.group(0), safe=""), neutralise_controls(url))
    return _MASS_MENTION.sub(lambda m: "%40" + m.group(1), url)


def discord_timestamp(moment: datetime, style: str = "R") -> str:
    """Discord's `<t:UNIX:R>` markup: each reader sees it in their own time zone ("in 59 minutes")."""
    return f"<t:{int(moment.timestamp())}:{style}>"


def custom_id(action_id: str, value: str) -> str:
    """The custom_id of a button: `tb:<action_id>:<value>` (Discord allows 100 characters)."""
    if ":" in action_id:
        raise ValueError(f"action_id {action_id!r} must not contain ':'")
    cid = f"{CUSTOM_ID_PREFIX}{action_id}:{value}"
    if len(cid) > MAX_CUSTOM_ID:
        raise ValueError(f"button custom_id too long ({len(cid)} > {MAX_CUSTOM_ID})")
    return cid


def parse_custom_id(cid: str) -> tuple[str, str] | None:
    """(action_id, value) of a tokenbot button, None for anything else."""
    if not cid.startswith(CUSTOM_ID_PREFIX):
        return None
    action_id, sep, value = cid[len(CUSTOM_ID_PREFIX) :].partition(":")
    return (action_id, value) if sep and action_id else None


def _notice(part: Notice, *, subtext: bool = False) -> str:
    line = f"{_ICONS.get(part.level, '•')} {inert(part.text)}"
    # "-# " is Discord's small grey subtext; only a single line can carry it.
    return f"-# {line}" if subtext and "\n" not in line else line


def _link(part: Link) -> str:
    # Angle brackets keep Discord from unfurling a presigned URL into a preview.
    line = f"🔗 [{_escape_label(inert(part.label))}](<{_inert_url(part.url)}>)"
    if part.expires_at is not None:
        line += f" · expires {discord_timestamp(part.expires_at)}"
    return line


_LABEL_SPECIALS = re.compile(r"([\[\]\\])")


def _escape_label(label: str) -> str:
    return _LABEL_SPECIALS.sub(r"\\\1", label)


def _failure_text(part: Failure) -> str:
    line = f"❌ **{inert(part.code)}**: {inert(part.message)}"
    if part.request_id:
        line += f" (request `{inert(part.request_id)}`)"
    if part.hint:
        line += f"\n→ {inert(part.hint)}"
    return line


def _fields_text(part: Fields) -> str:
    rows = "\n".join(f"**{inert(label)}**: {inert(value)}" for label, value in part.rows)
    title = inert(part.title)
    return f"**{title}**\n{rows}" if rows else f"**{title}**"


def render_markdown(parts: Sequence[Part], *, subtext_notices: bool = False) -> str:
    """Parts as plain Markdown (no embeds), e.g. the usage line under a streamed answer."""
    lines: list[str] = []
    for part in parts:
        if isinstance(part, Text):
            lines.append(inert(part.markdown))
        elif isinstance(part, Notice):
            lines.append(_notice(part, subtext=subtext_notices))
        elif isinstance(part, Link):
            lines.append(_link(part))
        elif isinstance(part, Image):
            lines.append(f"🖼️ {inert(part.alt or part.path.name)}")
        elif isinstance(part, Failure):
            lines.append(_failure_text(part))
        elif isinstance(part, Fields):
            lines.append(_fields_text(part))
        # Actions have no text form: buttons only exist as components.
    return "\n".join(line for line in lines if line)


def _failure_embed(part: Failure) -> discord.Embed:
    embed = discord.Embed(
        title=clip(f"❌ {inert(part.message)}", MAX_TITLE), colour=discord.Colour(FAILURE_COLOUR)
    )
    code = inert(part.code)
    embed.add_field(name="Code", value=clip(f"`{code}`", MAX_FIELD_VALUE), inline=True)
    if part.request_id:
        request_id = inert(part.request_id)
        embed.add_field(
            name="Request id", value=clip(f"`{request_id}`", MAX_FIELD_VALUE), inline=True
        )
    if part.hint:
        embed.add_field(
            name="Next step", value=clip(inert(part.hint), MAX_FIELD_VALUE), inline=False
        )
    return embed


def _fields_embeds(part: Fields) -> list[discord.Embed]:
    """One field per row, 25 to an embed; the title goes on the first."""
    rows = [(inert(label), inert(value)) for label, value in part.rows] or [("", "")]
    embeds: list[discord.Embed] = []
    for start in range(0, len(rows), MAX_FIELDS):
        embed = discord.Embed(colour=discord.Colour(FIELDS_COLOUR))
        if start == 0:
            embed.title = clip(inert(part.title), MAX_TITLE)
        for label, value in rows[start : start + MAX_FIELDS]:
            if not label and not value:
                continue
            embed.add_field(
                name=clip(label or _BLANK, MAX_FIELD_NAME),
                value=clip(value or _BLANK, MAX_FIELD_VALUE),
                inline=len(value) <= _INLINE_MAX,
            )
        embeds.append(embed)
    return embeds


def render(parts: Sequence[Part]) -> Rendered:
    """Parts as one Discord message: Markdown content, embeds, and button specs.

    Content is not split here; the sender splits overlong content at paragraph / code-fence
    boundaries. Embeds beyond Discord's ten per message fall back to Markdown content.
    """
    out = Rendered()
    text: list[str] = []
    for part in parts:
        if isinstance(part, Failure):
            out.embeds.append(_failure_embed(part))
        elif isinstance(part, Fields):
            out.embeds.extend(_fields_embeds(part))
        elif isinstance(part, Actions):
            out.buttons.extend(part.buttons)
        else:
            text.append(render_markdown([part]))
    if len(out.embeds) > MAX_EMBEDS:
        # Rare (a huge table): keep what fits as embeds, say the rest as text.
        spill = out.embeds[MAX_EMBEDS:]
        out.embeds = out.embeds[:MAX_EMBEDS]
        text.extend(_embed_text(e) for e in spill)
    out.content = "\n".join(t for t in text if t)
    out.buttons = out.buttons[:MAX_BUTTONS]
    return out


def _embed_text(embed: discord.Embed) -> str:
    lines = [f"**{embed.title}**"] if embed.title else []
    lines += [f"**{f.name}**: {f.value}" for f in embed.fields]
    return "\n".join(lines)


def button_label(button: Button) -> str:
    """A button's label within Discord's 80 characters."""
    return clip(inert(button.label), MAX_LABEL)
