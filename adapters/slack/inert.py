"""Text for Slack `markdown` blocks and streamed markdown, unable to produce Slack entities. Pure.

Slack reads its own `<…>` tokens inside a `markdown` block too, so a model echoing
`<!channel>` or `<https://evil|bank.com>` would ping everyone or hide a link target, and a
Markdown link whose target is not a web address (`[x](!here)`) may be translated into one.

- A `<` that could open a Slack token (`<!…`, `<@…`, `<#…`, `<scheme:…`, `<www.…`, `<…|…>`) is
  written `&lt;`: Slack shows it as the literal character and never re-reads the result as
  a token. Other `<` (`a < b`, `vector<int>`, `<div>`) are left alone, so code reads and
  copies cleanly. The rules look ahead at most to the end of the line, so a streamed text can
  be sent piece by piece as it settles (`settled_length`).
- A link or image whose target is not http(s)/mailto gets its `]` escaped (`\\](`), which
  Markdown shows literally; web targets keep working with `|<>` percent-encoded. Reference
  definitions (`[r]: target`) are shown literally for the same reason. Both rules apply in
  code too: whether Slack's translation respects code spans is not documented, and a
  backslash in a rare `](` inside code costs less than a channel-wide ping.
- `&` is left alone: decoding it can't create a token, and escaping it would show `&amp;`.

`plain_text` objects decode no entities: there a token-shaped `<` gets a word joiner instead.
"""

from __future__ import annotations

import re

from bot.core.outbound_text import neutralise_controls

__all__ = ["inert_markdown", "inert_plain", "settled_length"]

# `<` that Slack could read as the start of a mention, a special mention or a link.
# The lookahead skips further `<` and allows them inside a `<…|…>`, so no `<` left alone can
# be followed by what another became (`&lt;`) and form a token with it.
_TOKEN_OPEN = re.compile(
    r"<(?=<*(?:[!@#]|[A-Za-z][A-Za-z0-9+.\-]{0,31}:|www\.)|[^\s>][^>\n]*\|[^>\n]*>)", re.I
)
# A live `](`: not preceded by an odd number of backslashes (those escape the bracket).
_LINK_OPEN = re.compile(r"(?<!\\)((?:\\\\)*)\]\(")
_DEST = re.compile(r"[ \t]*(<?)((?:https?://|mailto:)[^\s)>]*)", re.I)
_REFERENCE = re.compile(r"^( {0,3})\[([^\]\n]*)\]:", re.M)
_URL_UNSAFE = {"|": "%7C", "<": "%3C", ">": "%3E"}
# How far past an undecided `<` or `](` the rules look; longer tails are decided.
_LOOKAHEAD = 40


def _links(text: str) -> str:
    """Markdown links, images and reference definitions that could target a non-web address."""
    text = _REFERENCE.sub(lambda m: f"{m.group(1)}\\[{m.group(2)}]:", text)
    out: list[str] = []
    pos = 0
    for m in _LINK_OPEN.finditer(text):
        out.append(text[pos : m.start()])
        out.append(m.group(1))
        dest = _DEST.match(text, m.end())
        if dest is None:
            out.append("\\](")  # not a web target: shown as text, never a link
            pos = m.end()
            continue
        url = "".join(_URL_UNSAFE.get(c, c) for c in dest.group(2))
        # `](<url>)` loses its angle brackets: a `<` before a URL would read as a token.
        out.append("](" + text[m.end() : dest.start(1)] + url)
        pos = dest.end()
        if dest.group(1) and text.startswith(">", pos):
            pos += 1
    out.append(text[pos:])
    return "".join(out)


def inert_markdown(markdown: str) -> str:
    """`markdown` as it may go into a `markdown` block: formatting kept, no Slack entities."""
    return _TOKEN_OPEN.sub("&lt;", _links(neutralise_controls(markdown)))


def inert_plain(text: str) -> str:
    """Text for a `plain_text` object (buttons, modal labels): no controls, no token-shaped `<`.

    Plain text decodes no entities, so a token-shaped `<` gets an invisible word joiner after
    it instead of `&lt;`: it reads the same and can't be parsed.
    """
    return _TOKEN_OPEN.sub("<\u2060", neutralise_controls(text))


def settled_length(markdown: str) -> int:
    """How much of a growing text renders the same whatever is appended (for streaming).

    The tail from an undecided `<` (no `>` or line end yet), a trailing `]` or an unfinished
    link target may change meaning with the next characters.
    """
    cut = len(markdown)
    tail_start = max(0, cut - _LOOKAHEAD)
    # The first `<` after the last `>` or line end: a `|…>` still to come would change it.
    closed = max(markdown.rfind(">"), markdown.rfind("\n"))
    lt = markdown.find("<", max(tail_start, closed + 1))
    if lt != -1:
        cut = min(cut, lt)
    bracket = markdown.rfind("]", tail_start)
    if bracket != -1 and not re.search(r"[\s)]", markdown[bracket:]):
        cut = min(cut, bracket)
    return cut
