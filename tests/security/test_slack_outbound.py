"""Slack output can't be steered by the text in it: no mention, special mention, channel link or
disguised link comes out of what a person, a model or a backend wrote, and no control character
is reprinted. A property over the renderer, then each reported message kind through the real
adapter against the fake Slack."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from adapters.slack.inert import inert_markdown
from adapters.slack.mrkdwn import to_mrkdwn
from adapters.slack.render import fallback_text, render_messages, trailer_blocks
from bot.core.messages import Actions, Button, Failure, Fields, Link, Notice, Part, Text
from bot.core.outbound_text import neutralise_controls
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.slack import TEAM, FakeSlack, SlackHarness, mention_event

HOSTILE = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "[x](!here)",
    "[click me](!channel)",
    "![i](@U123)",
    "<@U123>",
    "<#C1|x>",
    "<!subteam^S1>",
    "<!subteam^S1|team>",
    "<https://evil.example|bank.com>",
    "<www.evil.example|bank>",
    "[bank](https://evil.example|<!here>)",
    "[r]: !channel",
    "[a [b] c](#C1)",
    "@everyone",
    "&",
    "&lt;!here&gt;",
    "|",
    "<",
    ">",
    "[",
    "]",
    "(",
    ")",
    "`",
    "```",
    "\n",
    "**",
    "*",
    "_",
    "~",
    "\\",
    "\x1b",
    "\x1b[31m",
    "\x1b]8;;https://evil\x07",
    "\x00",
    "\u202e",
    "\r",
    "\ue000",
    "\ue0000\ue000",
    "\x000\x00",
    "https://ok.example/a?b=1&c=2",
    "mailto:a@b.example",
    " ",
    "word",
]
hostile_text = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=3)), max_size=12).map(
    "".join
)
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
SAFE_TARGET = re.compile(r"(?:https?://|mailto:)[^\s<>|]+", re.I)


def strings(value: Any) -> Iterator[tuple[str, str]]:
    """(kind, text) of every string in a Block Kit structure; kind says how Slack reads it."""
    if isinstance(value, dict):
        kind = str(value.get("type") or "")
        for key, item in value.items():
            if isinstance(item, str) and key == "text":
                yield kind, item
            elif key in ("url", "action_id", "value", "type", "style"):
                continue
            else:
                yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def _unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def assert_mrkdwn_inert(text: str, urls: set[str], dates: bool) -> None:
    """Every `<…>` Slack would parse is a web link to an allowed URL (or the bot's own date)."""
    assert not CONTROLS.search(text), repr(text)
    for entity in re.findall(r"<([^<>]*)>", text):
        if entity.startswith("!date^"):
            assert dates, entity
            continue
        target = entity.split("|", 1)[0]
        assert not target.startswith(("!", "@", "#")), entity
        assert SAFE_TARGET.fullmatch(target), entity
        assert _unescape(target).replace("%7C", "|") in urls, entity


def assert_no_token_opener(text: str) -> None:
    """No control character and no `<` Slack could read as the start of a token."""
    assert not CONTROLS.search(text), repr(text)
    assert not re.search(r"<(?:[!@#]|https?:|mailto:|www\.)", text, re.I), text
    # A `<` followed by a word joiner (U+2060) can't open a token: that is the plain-text breaker.
    assert not re.search(r"<(?!\u2060)[^\s>][^>\n]*\|[^>\n]*>", text), text


def assert_markdown_inert(text: str) -> None:
    """No token opener and no live Markdown link to a non-web target."""
    assert_no_token_opener(text)
    for m in re.finditer(r"(?<!\\)((?:\\\\)*)\]\(", text):
        assert re.match(r"[ \t]*<?(?:https?://|mailto:)", text[m.end() :], re.I), text


def assert_inert(blocks: list[dict[str, Any]], fallback: str, urls: set[str], dates: bool) -> None:
    for kind, text in strings(blocks):
        if kind == "markdown":
            assert_markdown_inert(text)
        elif kind == "plain_text":
            assert_no_token_opener(text)
        else:
            assert_mrkdwn_inert(text, urls, dates)
    assert_mrkdwn_inert(fallback, urls, dates)


def text_urls(*texts: str) -> set[str]:
    """The web targets a text itself spells out (a Markdown link may legitimately use them)."""
    found: set[str] = set()
    for text in map(neutralise_controls, texts):  # what the renderer sees
        found.update(m.group(0) for m in SAFE_TARGET.finditer(text))
        found.update(re.findall(r"\]\(([^)\s]+)", text))
    return found


@settings(max_examples=300, deadline=None)
@given(hostile_text)
def test_to_mrkdwn_of_hostile_text_yields_no_entity(text: str) -> None:
    assert_mrkdwn_inert(to_mrkdwn(text), text_urls(text), dates=False)


@settings(max_examples=300, deadline=None)
@given(hostile_text)
def test_markdown_blocks_of_hostile_text_are_inert(text: str) -> None:
    assert_markdown_inert(inert_markdown(text))


@settings(max_examples=200, deadline=None)
@given(hostile_text, hostile_text, hostile_text, st.booleans())
# Once found: a Link whose URL ends in a lone ")" was linked without it in the fallback text.
@example(a="", b="https://ok.example/a?b=1&c=2)", c="<!channel>", expiring=False)
# And one whose URL then held "<…>": its fallback link pointed at the URL cut short.
@example(a="", b="https://ok.example/a?b=1&c=2)<!channel>", c="<!channel>", expiring=False)
def test_every_part_kind_renders_hostile_text_inert(a: str, b: str, c: str, expiring: bool) -> None:
    link_url = "https://cdn.example/file?a=1&b=2"
    parts: list[Part] = [
        Text(markdown=a),
        Notice(level="progress", text=b),
        Failure(code=a, message=b, hint=c, request_id=c),
        Fields(title=a, rows=[(b, c), (c, a)]),
        Link(
            url=link_url, label=a, expires_at=datetime(2026, 1, 1, tzinfo=UTC) if expiring else None
        ),
        Link(url=b, label=c),  # a URL that may be anything: never a link unless it is web
        Actions(buttons=[Button(action_id="x", label=a, value=b)]),
    ]
    # `b` is also an explicit Link part's URL: the renderer may link it (without its control
    # characters) when it is web.
    urls = text_urls(a, b, c) | {link_url, b, neutralise_controls(b)}
    for message in render_messages(parts):
        assert_inert(message.blocks, message.text, urls, dates=expiring)
    assert_inert(trailer_blocks(parts), fallback_text(parts), urls, dates=expiring)


def test_a_typed_stash_marker_restores_nothing_and_private_use_text_is_kept() -> None:
    # Found by the property above: U+E000 (the old marker) was rewritten to U+FFFD, so a URL
    # ending in it was linked in the fallback text as a different URL than the button's.
    url = "https://ok.example/a?b=1&c=2\ue000"
    assert to_mrkdwn(url) == "https://ok.example/a?b=1&amp;c=2\ue000"
    assert to_mrkdwn("`x` \x000\x00 \ue0000\ue000") == "`x` 0 \ue0000\ue000"


def test_the_reported_link_trick_stays_literal_and_real_links_still_work() -> None:
    assert to_mrkdwn("[click me](!channel)") == "[click me](!channel)"
    assert to_mrkdwn("<!channel> [x](@U1)") == "&lt;!channel&gt; [x](@U1)"
    assert to_mrkdwn("[ok](https://a.example/?q=1|2)") == "<https://a.example/?q=1%7C2|ok>"
    assert to_mrkdwn("[ok](<https://a.example/b)>)") == "<https://a.example/b)|ok>"
    assert to_mrkdwn("[x](<!channel>)") == "[x](&lt;!channel&gt;)"
    # A target that opens with "<" but is not the bracketed form is no link (it was cut short).
    assert to_mrkdwn("[x](<https://a.example/b)<c>)") == "[x](&lt;https://a.example/b)&lt;c&gt;)"
    assert inert_markdown("[click me](!channel) <!here>") == "[click me\\](!channel) &lt;!here>"
    # Ordinary code keeps its angle brackets; a token-shaped one is broken even in code.
    assert inert_markdown("`vector<int> a < b` `<@U1>`") == "`vector<int> a < b` `&lt;@U1>`"
    assert inert_markdown("[docs](https://x.example/a|b)") == "[docs](https://x.example/a%7Cb)"
    assert inert_markdown("red \x1b[31mtext\x00 \u202e") == "red text [U+202E]"


# --- through the adapter ----------------------------------------------------------------------

ATTACK = "[click me](!channel) <!here> <@U9> \x1b[2J"


def owner(user: str = "U1") -> Owner:
    return Owner(platform="slack", workspace=TEAM, user=user)


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    await harness.bot.store.put_credential(owner(), "alltoken", sim.issue_key(10.0))
    try:
        yield harness
    finally:
        await harness.aclose()


def sent(fake: FakeSlack) -> list[tuple[str, dict[str, Any]]]:
    """Every message-bearing call the bot made, and every response_url post."""
    methods = {
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "chat.startStream",
        "chat.appendStream",
        "chat.stopStream",
    }
    out = [(c.method, c.args) for c in fake.calls if c.method in methods]
    out.extend(("response_url", r.payload) for r in fake.responses)
    return out


def assert_all_inert(fake: FakeSlack) -> None:
    calls = sent(fake)
    assert calls
    for _method, args in calls:
        blocks = args.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        for kind, text in strings(blocks):
            if kind == "markdown":
                assert_markdown_inert(text)
            elif kind == "plain_text":
                assert_no_token_opener(text)
            else:
                assert_mrkdwn_inert(text, set(), dates=True)
        assert_mrkdwn_inert(str(args.get("text") or ""), set(), dates=True)
        if "markdown_text" in args:
            assert_markdown_inert(str(args["markdown_text"]))
    assert "<!channel" not in fake.all_text() and "<!here" not in fake.all_text()
    assert "\\u001b" not in fake.all_text()


async def test_image_progress_line_and_ready_edit_show_the_trick_literally(
    slack: SlackHarness,
) -> None:
    await slack.command("/alltoken-image", ATTACK)
    await slack.settle()
    fake = slack.fake
    assert fake.uploads  # the job ran to the end
    texts = [str(c.args.get("text")) for c in fake.calls_to("chat.postMessage")]
    texts += [str(c.args.get("text")) for c in fake.calls_to("chat.update")]
    assert any("Generating an image" in t for t in texts)
    ready = [t for t in texts if "Image ready" in t]
    assert ready and "[click me](!channel)" in ready[-1] and "&lt;!here&gt;" in ready[-1]
    assert_all_inert(fake)
    [upload] = fake.calls_to("files.getUploadURLExternal")
    assert "\x1b" not in str(upload.args.get("alt_txt"))


async def test_search_header_shows_the_trick_literally(slack: SlackHarness) -> None:
    await slack.command("/alltoken-search", ATTACK)
    await slack.settle()
    assert "2 sources about" in slack.fake.all_text()
    assert_all_inert(slack.fake)


async def test_chat_answer_and_its_fallback_text_show_an_echo_literally(
    slack: SlackHarness,
) -> None:
    await slack.command("/alltoken-chat", ATTACK)
    await slack.settle()
    [post] = slack.fake.calls_to("chat.postMessage")
    final = slack.fake.bot_messages("C1")[-1]
    assert "You asked" in final["text"] and "[click me](!channel)" in final["text"]
    assert post.args["text"]
    assert_all_inert(slack.fake)


async def test_a_streamed_thread_answer_is_inert_chunk_by_chunk(
    slack: SlackHarness, sim: AllTokenSim
) -> None:
    sim.config.tokens_per_second = 80
    await slack.event(mention_event(slack.fake, "C1", "U1", "alltoken chat " + ATTACK))
    await slack.settle()
    [stream] = slack.fake.streams.values()
    assert "You asked" in stream.text and "click me" in stream.text
    assert_markdown_inert(stream.text)  # the concatenation Slack shows, not just each chunk
    assert_all_inert(slack.fake)


def test_a_link_target_with_parentheses_stays_whole() -> None:
    # Found by the property test above: an explicit Link whose URL holds "(…)" lost its ")".
    assert to_mrkdwn("[w](https://en.wikipedia.org/wiki/Foo_(bar))") == (
        "<https://en.wikipedia.org/wiki/Foo_(bar)|w>"
    )
    assert to_mrkdwn("[x](https://a.example/?q=[y](!here)) [z](!channel)") == (
        "<https://a.example/?q=[y](!here)|x> [z](!channel)"
    )
