"""Markdown <-> Slack text. Pure.

`to_mrkdwn` turns the CommonMark the core and the models write into Slack's mrkdwn (for
section blocks, notification text and modals, where the `markdown` block is not available);
`from_slack` turns a person's message text back into plain text (entities, links, mentions).
"""

from __future__ import annotations

import re

from bot.core.outbound_text import neutralise_controls

__all__ = [
    "escape",
    "escape_url",
    "from_slack",
    "is_safe_url",
    "link",
    "markdown_target",
    "strip_mention",
    "to_mrkdwn",
]

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})[^\n]*\n(.*?)(?:^ {0,3}\2[ \t]*$|\Z)", re.M | re.S)
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
# A link target may hold balanced parentheses, as CommonMark allows ("…/Foo_(bar)"), or be
# any text between pointy brackets ("(<…/a)b>)"), which is how a URL with a lone ")" is written.
_TARGET = r"(<[^<>\n]*>|(?:[^()\s]|\([^()\s]*\))+)"
_PLAIN_TARGET = re.compile(r"(?:[^()\s<>]|\([^()\s<>]*\))+")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(" + _TARGET + r"(?:\s+\"[^\"]*\")?\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(" + _TARGET + r"(?:\s+\"[^\"]*\")?\)")
# The only link targets Slack may render: web and mail addresses. Anything else (`!channel`,
# `@U123`, `#C1`, `javascript:`) would become a Slack entity or a trap, so it stays text.
_SAFE_URL = re.compile(r"(?:https?://|mailto:)[^\s<>\x00-\x1f\x7f-\x9f]+", re.I)
_AUTOLINK = re.compile(r"<(https?://[^>\s|<]+)>")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1", re.S)
_ITALIC_STAR = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~", re.S)
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+", re.M)
_RULE = re.compile(r"^ {0,3}(?:-{3,}|\*{3,}|_{3,})[ \t]*$", re.M)
# A stash marker: NUL and a number. neutralise_controls removes every NUL from the input first,
# so no text can forge a marker, and every other character (U+E000 included) is kept as typed.
_STASH = "\x00"
_STASHED = re.compile(_STASH + r"(\d+)" + _STASH)

_SLACK_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
_CHANNEL = re.compile(r"<#[A-Z0-9]+\|([^>]*)>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")


def escape(text: str) -> str:
    """Escape the three characters Slack treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def is_safe_url(url: str) -> bool:
    """Whether `url` may be the target of a Slack link (http, https or mailto, no spaces)."""
    return _SAFE_URL.fullmatch(url) is not None


def markdown_target(url: str) -> str:
    """`url` as a Markdown link target: between pointy brackets when a lone parenthesis (or a
    space) would otherwise end it early."""
    return url if _PLAIN_TARGET.fullmatch(url) else f"<{url}>"


def escape_url(url: str) -> str:
    """A URL escaped for the target of `<url|label>`: `&<>` as entities, `|` percent-encoded."""
    return escape(url).replace("|", "%7C")


def _label(text: str) -> str:
    # A `|` would end the target early in some clients; `¦` reads the same.
    return escape(text).replace("|", "¦")


def link(url: str, label: str) -> str:
    """`<url|label>` for a web or mail address; any other target is shown as inert text."""
    url, label = neutralise_controls(url), neutralise_controls(label)
    if is_safe_url(url):
        return f"<{escape_url(url)}|{_label(label or url)}>"
    if not url or url == label:
        return escape(label or url)
    return f"{escape(label)} ({escape(url)})"


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class _Stash:
    """Holds finished pieces (code, links) so later rules can't touch them."""

    def __init__(self) -> None:
        self.pieces: list[str] = []

    def put(self, piece: str) -> str:
        self.pieces.append(piece)
        return f"{_STASH}{len(self.pieces) - 1}{_STASH}"

    def restore(self, text: str) -> str:
        # Pieces may contain other stashed pieces (a link label with code): restore until stable.
        for _ in range(4):
            new = _STASHED.sub(lambda m: self.pieces[int(m.group(1))], text)
            if new == text:
                break
            text = new
        return text


def to_mrkdwn(markdown: str) -> str:
    """Convert Markdown to Slack mrkdwn: `**b**` -> `*b*`, `*i*` -> `_i_`, links -> `<url|label>`.

    Code (fenced and inline) is kept verbatim apart from the fence's info string, which
    mrkdwn would show as code; `&`, `<` and `>` are escaped everywhere. Only web and mail
    targets become links, so no text can produce a mention (`[x](!channel)` stays literal).
    """
    stash = _Stash()
    # Control characters go (NUL with them: a marker typed by someone cannot restore a piece).
    markdown = neutralise_controls(markdown)

    def fence(m: re.Match[str]) -> str:
        body = m.group(3).rstrip("\n")
        return stash.put(f"```\n{escape(body)}\n```")

    text = _FENCE.sub(fence, markdown.replace("\r\n", "\n"))
    text = _INLINE_CODE.sub(lambda m: stash.put(f"`{escape(m.group(2))}`"), text)

    def to_link(m: re.Match[str]) -> str:
        target = m.group(2)
        if target.startswith("<"):
            if not target.endswith(">"):
                # Not the pointy-bracket form (that holds no "<" or ">"): no link target at all.
                return m.group(0)
            target = target[1:-1]
        if not is_safe_url(target):
            return m.group(0)  # escaped with the rest of the text: shown, never parsed
        return stash.put(f"<{escape_url(target)}|{_label(m.group(1) or target)}>")

    text = _IMAGE.sub(to_link, text)
    text = _LINK.sub(to_link, text)
    text = _AUTOLINK.sub(lambda m: stash.put(f"<{escape_url(m.group(1))}>"), text)
    text = escape(text)
    text = _HEADING.sub(lambda m: stash.put(f"*{m.group(1)}*"), text)
    text = _RULE.sub("──────────", text)
    # Bold first (into the stash), so its `**` can't be read as two italics.
    text = _BOLD.sub(lambda m: stash.put(f"*{m.group(2)}*"), text)
    text = _ITALIC_STAR.sub(r"_\1_", text)
    text = _STRIKE.sub(r"~\1~", text)
    text = _BULLET.sub(r"\1• ", text)
    return stash.restore(text)


def strip_mention(text: str, user_id: str) -> str:
    """Remove mentions of `user_id` (the bot) and tidy the whitespace they leave behind."""
    if not user_id:
        return text.strip()
    text = re.sub(rf"<@{re.escape(user_id)}(?:\|[^>]*)?>[:,]?", " ", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def from_slack(text: str) -> str:
    """A person's message as plain text: entities decoded, `<url|label>` -> url, `<#C|name>` -> #name."""
    text = _SLACK_LINK.sub(lambda m: m.group(1).removeprefix("mailto:"), text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(1)}", text)
    text = _SPECIAL.sub(lambda m: f"@{m.group(1)}", text)
    return _unescape(text)
