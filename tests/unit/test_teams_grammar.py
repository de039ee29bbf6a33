"""The `/tokenbot` grammar: every spec's examples and usage line, mentions on both platforms,
typed (Discord) options, and the usage errors for what it cannot read."""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from bot.backends.alltoken.spec import ChatCommand
from bot.backends.openmarlin.spec import OMExecute
from bot.core.app import default_families
from bot.core.command_spec import CommandSpec
from bot.core.grammar import ParseState, UsageError
from bot.core.messages import Inbound
from bot.core.policy_gate import policy_name
from bot.teams import grammar
from bot.teams.gate import TeamsGate, always_allowed, names_no_model
from bot.teams.spec import (
    SPECS,
    AdminAdd,
    AdminChannelModel,
    AdminChannels,
    AdminCommands,
    AdminModels,
    AdminWorkspaceKey,
    BudgetUserDaily,
    BudgetWorkspace,
    OwnKeysOptIn,
    TeamsHelp,
    UsageQuery,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STATE = ParseState(now=lambda: NOW)


def parse(text: str) -> BaseModel | None:
    return grammar.parse(text, STATE)


def _required_part(usage: str) -> str:
    while (shorter := re.sub(r"\s*\[[^\[\]]*\]", "", usage)) != usage:
        usage = shorter
    return usage


def test_every_command_model_has_exactly_one_spec() -> None:
    counts = Counter(s.model for s in SPECS)
    assert set(counts.values()) == {1}
    assert len({s.path for s in SPECS}) == len(SPECS) == len({s.key for s in SPECS})


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_each_example_parses_to_its_command(spec: CommandSpec) -> None:
    for example in spec.examples:
        assert isinstance(parse(example), spec.model or BaseModel), example


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key)
def test_each_usage_line_parses_or_gives_its_own_usage(spec: CommandSpec) -> None:
    try:
        command = parse(_required_part(spec.usage))
    except UsageError as exc:
        assert exc.usage == spec.usage and exc.command == spec.key, exc
    else:
        assert isinstance(command, spec.model or BaseModel)
    for option in spec.options:
        assert option.description and len(option.description) <= 100
    assert len(spec.description) <= 100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/tokenbot", TeamsHelp()),
        ("tokenbot help budget", TeamsHelp(topic="budget")),
        ("/tokenbot usage", UsageQuery()),
        ("/tokenbot usage --user me --by backend", UsageQuery(by="backend")),
        (
            "/tokenbot usage --user all --since 30d --csv",
            UsageQuery(user="all", since_days=30, csv=True),
        ),
        ("/tokenbot usage --since 2026-05-01", UsageQuery(since=date(2026, 5, 1), since_days=None)),
        ("/tokenbot usage --user <@U0ABC|ann>", UsageQuery(user="U0ABC")),
        ("/tokenbot usage --user <@!1234>", UsageQuery(user="1234")),
        ("/tokenbot admin add <@U0ABC>", AdminAdd(user="U0ABC")),
        ("/tokenbot admin add <@1234>", AdminAdd(user="1234")),
        ("/tokenbot admin channels add <#C0ABC|ai>", AdminChannels(action="add", channel="C0ABC")),
        ("/tokenbot admin channels remove <#555>", AdminChannels(action="remove", channel="555")),
        ("/tokenbot admin channels everywhere", AdminChannels(action="everywhere")),
        (
            "/tokenbot admin commands openclaw-token deny keys create",
            AdminCommands(backend="openclaw_token", action="deny", commands=("keys", "create")),
        ),
        (
            "/tokenbot admin commands alltoken reset",
            AdminCommands(backend="alltoken", action="reset"),
        ),
        (
            "/tokenbot admin models openmarlin allow openai/gpt-5 OpenAI/gpt-5",
            AdminModels(
                backend="openmarlin", action="allow", models=("openai/gpt-5", "OpenAI/gpt-5")
            ),
        ),
        ("/tokenbot admin channel-model alltoken clear", AdminChannelModel(backend="alltoken")),
        (
            "/tokenbot admin workspace-key alltoken --clear",
            AdminWorkspaceKey(backend="alltoken", clear=True),
        ),
        ("/tokenbot admin budget workspace $1,200", BudgetWorkspace(usd=Decimal("1200.00"))),
        ("/tokenbot admin budget user-daily none", BudgetUserDaily(usd=None)),
        ("/tokenbot budget own-keys OFF", OwnKeysOptIn(on=False)),
    ],
)
def test_parses(text: str, expected: BaseModel) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("/tokenbot admin", "missing subcommand"),
        ("/tokenbot admin budget monthly 5", "unknown subcommand 'monthly'"),
        ("/tokenbot nope", "unknown command 'nope'"),
        ("/tokenbot admin add", "name the member"),
        ("/tokenbot admin add <@U1> <@U2>", "unexpected argument"),
        ("/tokenbot admin add <#C1>", "not a @mention"),
        ("/tokenbot admin channels add", "name the channel"),
        ("/tokenbot admin commands alltoken permit video", "allow, deny, reset"),
        ("/tokenbot admin commands alltoken deny", "name the commands"),
        ("/tokenbot admin budget workspace 0", "above $0"),
        ("/tokenbot admin budget workspace 1.005", "two decimals"),
        ("/tokenbot admin budget workspace lots", "not an amount"),
        ("/tokenbot admin workspace-key alltoken sk-whatever", "private form"),
        ("/tokenbot usage --since 2026-07-01", "in the future"),
        ("/tokenbot usage --since 400d", "1 to 366 days"),
        ("/tokenbot usage --by week", "--by must be one of"),
        ("/tokenbot usage --user <#C1>", "not a @mention"),
        ("/tokenbot budget own-keys maybe", "on, off"),
    ],
)
def test_usage_errors(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(text)
    assert problem in info.value.problem and info.value.usage


def test_talk_about_the_bot_is_not_a_command() -> None:
    assert parse("tokenbot is great") is None
    assert parse("see https://x.example/tokenbot usage") is None
    assert grammar.parse_slash("/alltoken-chat", "hi", STATE) is None


@given(st.from_regex(r"[UW][A-Z0-9]{8,11}|[1-9][0-9]{16,19}", fullmatch=True))
def test_mentions_in_every_form_give_the_id(user: str) -> None:
    for form in (f"<@{user}>", f"<@!{user}>", f"<@{user}|some name>", user, f"@{user}"):
        assert grammar.user_id("admin add", form) == user
    for form in (f"<#{user}>", f"<#{user}|general>", user):
        assert grammar.channel_id("admin channels", form) == user


SPEC = {" ".join(s.path[1:]): s for s in SPECS}


@pytest.mark.parametrize(
    ("words", "values", "expected"),
    [
        ("admin add", {"user": "<@77>"}, AdminAdd(user="77")),
        (
            "admin channels",
            {"action": "add", "channel": "<#555>"},
            AdminChannels(action="add", channel="555"),
        ),
        (
            "admin commands",
            {"backend": "alltoken", "action": "deny", "commands": "video image"},
            AdminCommands(backend="alltoken", action="deny", commands=("video", "image")),
        ),
        (
            "admin workspace-key",
            {"backend": "alltoken", "clear": True},
            AdminWorkspaceKey(backend="alltoken", clear=True),
        ),
        ("admin budget workspace", {"usd": "25"}, BudgetWorkspace(usd=Decimal("25.00"))),
        (
            "usage",
            {"by": "model", "since": "30d", "csv": True},
            UsageQuery(by="model", since_days=30, csv=True),
        ),
        ("help", {"topic": "admin"}, TeamsHelp(topic="admin")),
        ("budget own-keys", {"state": "on"}, OwnKeysOptIn(on=True)),
    ],
)
def test_typed_options_build_the_same_commands(
    words: str, values: dict[str, str | bool], expected: BaseModel
) -> None:
    assert grammar.parse_options(SPEC[words], values, STATE) == expected


def test_typed_options_are_checked_like_text() -> None:
    with pytest.raises(UsageError):
        grammar.parse_options(SPEC["admin budget workspace"], {"usd": "-3"}, STATE)


# --- the gate's pure parts --------------------------------------------------------------------


def test_policy_names_are_the_words_after_the_backend() -> None:
    specs = [s for f in default_families() for s in f.specs]
    names = {(s.family, policy_name(s)) for s in specs}
    assert {("alltoken", "chat"), ("openmarlin", "run"), ("openclaw_token", "keys create")} <= names
    assert always_allowed("alltoken", "help") and always_allowed("openmarlin", "key")
    assert always_allowed("tokenbot", "admin add") and not always_allowed("alltoken", "chat")
    gate = TeamsGate()
    gate.know(specs)
    assert gate.chat_command("alltoken") == "chat" and gate.chat_command("openmarlin") == "run"
    assert gate.chat_command("openclaw_token") is None
    assert "help" not in gate.gated_commands("alltoken") and "video" in gate.gated_commands(
        "alltoken"
    )


def _inbound(text: str, **options: str) -> Inbound:
    return Inbound(
        platform="slack", workspace="w", channel="c", user="u", text=text, options=options or None
    )


def test_a_command_names_a_model_only_when_the_message_does() -> None:
    default = ChatCommand(prompt="hi", model="gpt-5.4-mini")
    assert names_no_model(default, _inbound("/alltoken-chat hi"))
    assert not names_no_model(default, _inbound("/alltoken-chat gpt-5.4-mini hi"))
    assert not names_no_model(default, _inbound("", model="gpt-5.4-mini"))
    assert not names_no_model(ChatCommand(prompt="hi", model="claude-sonnet-4-6"), _inbound("hi"))
    assert names_no_model(OMExecute(instruction="x"), _inbound("use openmarlin to x"))
    assert not names_no_model(TeamsHelp(), _inbound("/tokenbot"))
