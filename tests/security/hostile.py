"""What a hostile or careless user types: hypothesis strategies and the checks every reply meets.

Shared by the attack suite's pipeline fuzzing (core, fake Slack, fake Discord, console).
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable, Sequence

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

from adapters.console.render import render as console_render
from adapters.discord.render import render as discord_render
from adapters.slack.render import render_messages
from bot.core.messages import Part, Text

# Mentions, links and markup that must never become live on a platform.
PINGS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<!subteam^S0123|team>",
    "<@U0123ABCD>",
    "<@W0123ABCD|bob>",
    "<#C0123|general>",
    "[click me](!channel)",
    "[x](!here)",
    "[y](@U0123)",
    "[z](#C0123)",
    "![img](!everyone)",
    "[a](<!channel>)",
    "<https://evil.example|safe>",
    "<mailto:x@y.z|mail>",
    "@everyone",
    "@here",
    "@\u200beveryone",
    "<@&123456789>",
    "<@123456789>",
    "<#123456789>",
    "&lt;!channel&gt;",
    "&amp;",
]
CONTROLS = [
    "\x1b[31m",
    "\x1b[2J",
    "\x1b]8;;https://evil.example\x07click\x1b]8;;\x07",
    "\x1b]0;title\x07",
    "\x07",
    "\x00",
    "\x08",
    "\r",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\ud800",
    "\x9b31m",
]
VALUES = [
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+14:00",
    "2026-02-30",
    "2020-01-01",
    "tomorrow",
    "1e309",
    "-1e309",
    "NaN",
    "inf",
    "-1",
    "0",
    "0x10",
    "1_000",
    "٣",
    "５",
    "99999999999999999999999",
    "0.0000001",
    "99999x99999",
    "0x0",
    "auto",
    "huge",
    "16:9",
    "-1",
    "1080p",
    "gpt-5.4-mini",
    "claude-sonnet-4-6",
    "../../etc/passwd",
    "%00",
    "'; DROP TABLE jobs; --",
    "`",
    "```",
    "**",
    "|",
    "\n",
]
FLAGS = [
    "--size",
    "--model",
    "--quality",
    "--duration",
    "--ratio",
    "--resolution",
    "--search-model",
    "--n",
    "--seed",
    "--limit",
    "--expires",
    "--name",
    "--credit-limit",
    "--limit-reset",
    "--amount",
    "--threshold",
    "--json",
    "--watch",
    "--since",
    "--type",
    "-type",
    "--format",
    "--sync",
    "--task",
    "--size\u200b",
    "—size",
]
# Sign-in commands are left out: each starts a device flow that waits minutes for a person
# (their grammar is fuzzed in tests/unit/test_hostile_values.py).
PREFIXES = [
    "/alltoken-chat",
    "/alltoken-search",
    "/alltoken-image",
    "/alltoken-video",
    "/alltoken-models",
    "/alltoken-cost",
    "/alltoken-key",
    "/alltoken-help",
    "/openmarlin",
    "/openmarlin balance",
    "/openmarlin status",
    "/openmarlin models",
    "/openmarlin usage",
    "/openmarlin ledger",
    "/openmarlin topup",
    "/openmarlin task",
    "/openmarlin key",
    "/openclaw-token",
    "/openclaw-token credits",
    "/openclaw-token credits buy",
    "/openclaw-token keys",
    "/openclaw-token keys create",
    "/openclaw-token keys info",
    "/openclaw-token keys update",
    "/openclaw-token keys usage",
    "/openclaw-token integrate",
    "/openclaw-token audit",
    "alltoken chat",
    "alltoken image",
    "use openmarlin to",
    "use openmarlin",
    "openmarlin balance",
    "how much did that cost",
    "",
]
_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"


def _key(prefix: str, alphabet: str, size: int) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=size, max_size=size).map(lambda body: prefix + body)


# Fresh keys of every kind the backends issue (never the simulators' own demo keys).
KEYS: st.SearchStrategy[str] = st.one_of(
    _key("sk-at-", _ALNUM, 20),
    _key("claw_wsk_", _ALNUM, 20),
    _key("sk-prov-", _HEX, 32),
    st.uuids().map(lambda u: f"sk-mgmt-{u}"),
)

_WORD = st.one_of(
    st.sampled_from(PINGS),
    st.sampled_from(CONTROLS),
    st.sampled_from(VALUES),
    st.tuples(
        st.sampled_from(FLAGS), st.sampled_from(["=", " ", "＝"]), st.sampled_from(VALUES)
    ).map("".join),
    st.text(max_size=12),
    st.sampled_from(["a", "cat", "poster", "reading", "please", "now", "extra", "set", "to"]),
)


@st.composite
def hostile_line(draw: st.DrawFn) -> tuple[str, str | None]:
    """(command prefix, rest) — a line as a person would type it, with hostile pieces in it."""
    prefix = draw(st.sampled_from(PREFIXES))
    words = draw(st.lists(_WORD, max_size=8))
    if draw(st.integers(0, 9)) == 0:
        words.insert(draw(st.integers(0, len(words))), draw(KEYS))
    return prefix, " ".join(words)


# --- checks -------------------------------------------------------------------------------

# The bot's own Slack date markup is the only `<!…>` it may produce.
_SLACK_ENTITY = re.compile(r"<(?!!date\^)[!@#]")
_DISCORD_MASS = re.compile(r"@(everyone|here)")
_TERMINAL_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _strings(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def rendered_problems(parts: Sequence[Part], streamed: str = "") -> list[str]:
    """What each adapter's renderer would show for these parts that must never be shown."""
    if streamed:
        parts = [*parts, Text(markdown=streamed)]
    problems: list[str] = []
    for message in render_messages(parts):
        for s in [message.text, *_strings(message.blocks)]:
            if _SLACK_ENTITY.search(s):
                problems.append(f"slack entity in {s!r}")
    rendered = discord_render(parts)
    embeds = [json.dumps(e.to_dict(), ensure_ascii=False) for e in rendered.embeds]
    for s in [rendered.content, *embeds, *(b.label for b in rendered.buttons)]:
        if _DISCORD_MASS.search(s):
            problems.append(f"discord mass mention in {s!r}")
    console = console_render(parts)
    if _TERMINAL_CONTROL.search(console.replace("\n", "").replace("\t", "")):
        problems.append(f"terminal control in {console!r}")
    return problems


def leaked(keys: Iterable[str], texts: Iterable[str]) -> list[str]:
    """Keys (or their distinctive bodies) that appear in any of `texts`."""
    found = []
    blob = "\n".join(texts)
    for key in keys:
        body = key.split("-")[-1] if key.startswith("sk-mgmt-") else key[-16:]
        if key in blob or body in blob:
            found.append(key)
    return found


def whole_bot_settings(max_examples: int) -> settings:
    """Hypothesis settings for examples that each drive a whole bot: no deadline, no shrinking
    (it would take minutes; the failing lines are printed), fixtures shared across examples."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.large_base_example,
            HealthCheck.data_too_large,
        ],
    )
