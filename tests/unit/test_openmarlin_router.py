"""bot.backends.openmarlin.grammar: text -> OpenMarlin command, usage error, or None."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.backends.openmarlin.grammar import parse, parse_slash
from bot.backends.openmarlin.spec import (
    USAGE,
    OMActivity,
    OMBalance,
    OMExecute,
    OMHelp,
    OMKey,
    OMModels,
    OMReferral,
    OMRegister,
    OMStatus,
    OMTask,
    OMTaskStatus,
    OMTopUp,
)
from bot.core.grammar import UsageError
from bot.core.key_shapes import contains_key

COMMAND_TYPES = (
    OMActivity,
    OMBalance,
    OMExecute,
    OMHelp,
    OMKey,
    OMModels,
    OMReferral,
    OMRegister,
    OMStatus,
    OMTask,
    OMTaskStatus,
    OMTopUp,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("use openmarlin to answer this", OMExecute(instruction="answer this")),
        ("ask openmarlin to summarize this page", OMExecute(instruction="summarize this page")),
        (
            "hey team, USE OpenMarlin to find today's USD/CNY exchange rate",
            OMExecute(instruction="find today's USD/CNY exchange rate"),
        ),
        ("use openmarlin to execute this task", OMExecute(instruction="execute this task")),
        (
            "use openmarlin to generate a video of a plane",
            OMTask(prompt="generate a video of a plane"),
        ),
        (
            "use openmarlin to submit an async video task",
            OMTask(prompt="submit an async video task"),
        ),
        (
            "use openmarlin to run the nightly report in the background",
            OMTask(prompt="run the nightly report in the background"),
        ),
        (
            "use openmarlin for a long-running crawl of the docs",
            OMTask(prompt="for a long-running crawl of the docs"),
        ),
        (
            "use openmarlin to render a logo synchronously",
            OMExecute(instruction="render a logo synchronously"),
        ),
        ("use openmarlin to make a video --sync", OMExecute(instruction="make a video")),
        ("use openmarlin to summarize it --async", OMTask(prompt="summarize it")),
        ("register OpenMarlin", OMRegister()),
        ("use openmarlin register", OMRegister()),
        ("/openmarlin sign up with the browser", OMRegister(auth_flow="workos_callback")),
        ("check OpenMarlin balance", OMBalance()),
        ("use openmarlin: balance?", OMBalance()),
        ("use openmarlin status", OMStatus()),
        ("use openmarlin models", OMModels()),
        ("/openmarlin models gpt", OMModels(filter="gpt")),
        ("use openmarlin activity", OMActivity()),
        ("use openmarlin top up 10", OMTopUp(amount=Decimal(10))),
        ("use openmarlin to top up 2.5 credits", OMTopUp(amount=Decimal("2.5"))),
        ("use openmarlin referral link", OMReferral()),
        ("use openmarlin task status task_ab12", OMTaskStatus(task_id="task_ab12")),
        ("use openmarlin", OMHelp()),
        ("/openmarlin help", OMHelp()),
        ("/openmarlin key", OMKey(action="prompt")),
        ("/openmarlin key remove", OMKey(action="remove")),
        ("use openmarlin to check the balance sheet of ACME", None),  # checked below
    ],
)
def test_examples(text: str, expected: object) -> None:
    if expected is None:
        assert isinstance(parse(text), OMExecute)
        return
    assert parse(text) == expected


def test_routing_hints_in_words_and_flags() -> None:
    words = parse(
        "use openmarlin to say hello with model openai-codex/gpt-5.4 on provider node-a "
        "with labels region=eu, gpu=a100"
    )
    flags = parse(
        "use openmarlin to say hello --model=openai-codex/gpt-5.4 --provider node-a "
        "--labels=region=eu,gpu=a100"
    )
    expected = OMExecute(
        instruction="say hello",
        model="openai-codex/gpt-5.4",
        provider_id="node-a",
        labels={"region": "eu", "gpu": "a100"},
    )
    assert words == expected and flags == expected


def test_tasks_record_the_routing_hints_they_ignore() -> None:
    cmd = parse("use openmarlin to make a video with model a/b on provider p1 with labels x=y")
    assert cmd == OMTask(prompt="make a video", ignored=("model a/b", "provider p1", "labels x=y"))


def test_task_options() -> None:
    cmd = parse("use openmarlin to render a clip --duration=7s --aspect-ratio=9:16")
    assert cmd == OMTask(prompt="render a clip", duration_ms=7000, aspect_ratio="9:16")


@pytest.mark.parametrize(
    ("text", "command", "needle"),
    [
        ("use openmarlin with model gpt-5.4 to say hi", "openmarlin.execute", "vendor/model"),
        ("use openmarlin with labels fast to say hi", "openmarlin.execute", "key=value"),
        ("use openmarlin top up", "openmarlin.topup", "amount"),
        ("use openmarlin top up -5", "openmarlin.topup", "amount"),
        ("use openmarlin top up 0", "openmarlin.topup", "above 0"),
        ("use openmarlin task status", "openmarlin.task_status", "which task"),
        ("use openmarlin to say hi --colour=red", "openmarlin.execute", "unknown option"),
        ("use openmarlin to render --duration=forever", "openmarlin.task", "--duration"),
        ("use openmarlin to say hi --sync --duration=5s", "openmarlin.task", "only apply"),
        ("/openmarlin key set sk-at-0123456789abcdefWXYZ", "openmarlin.key", "not an OpenMarlin"),
        (
            "use openmarlin to remember claw_wsk_0123456789abcdefgh",
            "openmarlin.execute",
            "API key",
        ),
    ],
)
def test_usage_errors_carry_their_usage_line(text: str, command: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text)
    assert info.value.command == command and needle in info.value.problem
    assert info.value.usage == USAGE[command]
    assert "claw_wsk_0123" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "I like openmarlin",
        "openmarlin is down again?",
        "see https://example.com/openmarlin docs",
        "we used openmarlin yesterday",
        "myopenmarlin thing",
    ],
)
def test_prose_is_ignored(text: str) -> None:
    assert parse(text) is None


def test_parse_slash() -> None:
    assert parse_slash("/openmarlin", "balance") == OMBalance()
    assert parse_slash("openmarlin", "") == OMHelp()
    assert parse_slash("/OpenMarlin", "say hi") == OMExecute(instruction="say hi")
    assert parse_slash("/alltoken-chat", "hi") is None


def _check(fn: Callable[..., object], *args: str) -> None:
    try:
        command = fn(*args)
    except UsageError as exc:
        assert exc.command.startswith("openmarlin")
        assert exc.usage and exc.problem
        assert not contains_key(exc.problem)
        return
    assert command is None or isinstance(command, COMMAND_TYPES)
    if isinstance(command, OMExecute):
        assert command.instruction.strip() and not contains_key(command.instruction)
        assert command.model is None or "/" in command.model
    if isinstance(command, OMTask):
        assert command.prompt.strip()


words = st.sampled_from(
    [
        "use openmarlin",
        "USE OPENMARLIN to",
        "/openmarlin",
        "ask openmarlin",
        "register openmarlin",
        "check openmarlin balance",
        "with model",
        "on provider",
        "with labels",
        "a/b",
        "x=y,",
        "=",
        "--model=",
        "--sync",
        "--async",
        "--duration=",
        "--aspect-ratio=",
        "video",
        "top up",
        "task status",
        "key set",
        "claw_wsk_0123456789abcdef",
        "12.5",
        "-1",
        ":",
        "—",
        "\n",
    ]
)
messages = st.lists(st.one_of(words, st.text(max_size=12)), max_size=10).map(" ".join)


@given(st.text())
def test_any_text_gives_none_a_command_or_a_usage_error(text: str) -> None:
    _check(parse, text)


@settings(max_examples=400)
@given(messages)
def test_command_shaped_text_gives_none_a_command_or_a_usage_error(text: str) -> None:
    _check(parse, text)
    _check(parse_slash, "/openmarlin", text)


@given(st.text().filter(lambda t: "openmarlin" not in t.lower()))
def test_no_openmarlin_no_command(text: str) -> None:
    assert parse(text) is None
