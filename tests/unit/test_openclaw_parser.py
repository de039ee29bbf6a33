"""The `/openclaw-token` parser: pure, total (parse, ignore or UsageError), never echoes secrets."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bot.backends.openclaw_token.grammar import GROUPS, SUBCOMMANDS, parse, parse_slash
from bot.backends.openclaw_token.spec import (
    AuditShow,
    AuthLogin,
    AuthRegister,
    AuthRotate,
    CreditsAutoTopup,
    CreditsBuy,
    CreditsHistory,
    Integrate,
    KeyFilter,
    KeysCreate,
    KeysList,
    KeySort,
    KeysRevokeAll,
    KeysUpdate,
    KeysUsage,
    OpenClawHelp,
    PasswordInChat,
)
from bot.core.grammar import UsageError

H = "0123456789abcdef"
PROV = "sk-prov-" + "ab" * 16


def slash(text: str) -> BaseModel | None:
    return parse_slash("/openclaw-token", text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("credits buy --amount 14.54", CreditsBuy(amount=Decimal("14.54"))),
        ("credits buy --amount=$5", CreditsBuy(amount=Decimal("5"))),
        ("credits buy 100", CreditsBuy(amount=Decimal("100"))),
        (
            "credits history --limit 50 --type purchase --offset 10",
            CreditsHistory(limit=50, offset=10, type="purchase"),
        ),
        ("credits history --type auto-topup", CreditsHistory(type="auto_topup")),
        (
            "credits auto-topup --enable --threshold 5 --amount 25",
            CreditsAutoTopup(action="enable", threshold=Decimal(5), amount=Decimal(25)),
        ),
        ("credits auto-topup --disable", CreditsAutoTopup(action="disable")),
        ("credits auto-topup", CreditsAutoTopup()),
        (
            'keys create --name "my agent" --limit 10 --limit-reset monthly --expires 2099-12-31',
            KeysCreate(
                name="my agent",
                credit_limit=Decimal(10),
                limit_reset="monthly",
                expires_at="2099-12-31T23:59:59Z",
            ),
        ),
        (
            "keys list --filter usage>10 --sort -usage",
            KeysList(
                filter=KeyFilter(kind="usage", op=">", value=Decimal(10)),
                sort=KeySort(field="usage", descending=True),
            ),
        ),
        (
            'keys list --filter "usage <= 2.5"',
            KeysList(filter=KeyFilter(kind="usage", op="<=", value=Decimal("2.5"))),
        ),
        (
            "keys list --filter active --sort created_at",
            KeysList(filter=KeyFilter(kind="active"), sort=KeySort(field="created")),
        ),
        (
            f"keys update {H} --limit none --limit-reset weekly --disabled",
            KeysUpdate(hash=H, set_limit=True, set_reset=True, limit_reset="weekly", disabled=True),
        ),
        (f"keys usage {H} --watch --interval 2", KeysUsage(hash=H, watch=True, interval=2)),
        (f"keys usage {H.upper()}", KeysUsage(hash=H)),
        ("keys revoke-all --yes", KeysRevokeAll(yes=True)),
        ("auth rotate", AuthRotate()),
        ("auth login", AuthLogin()),
        ("auth login --github", AuthLogin()),
        ("auth login --email", AuthLogin(email=True)),
        ("auth login --email ada@example.com", AuthLogin(email=True, email_hint="ada@example.com")),
        ("auth register", AuthRegister()),
        ("integrate", Integrate()),
        (f"integrate {H}", Integrate(hash=H)),
        (
            "integrate --name fb --limit 3 --limit-reset daily",
            Integrate(name="fb", credit_limit=Decimal(3), limit_reset="daily"),
        ),
        ("integrate --status", Integrate(action="status")),
        ("integrate --remove", Integrate(action="remove")),
        ("audit", AuditShow()),
        ("audit show --limit 5 --all", AuditShow(limit=5, everyone=True)),
        ("", OpenClawHelp()),
        ("help keys", OpenClawHelp(topic="keys")),
        ("keys --help", OpenClawHelp(topic="keys")),
        ("credits buy --help", OpenClawHelp(topic="credits")),
    ],
)
def test_parses(text: str, expected: BaseModel) -> None:
    assert slash(text) == expected


def test_json_flag_anywhere() -> None:
    assert slash("--json credits balance") == slash("credits balance --json")
    listed = slash("keys list --json")
    assert isinstance(listed, KeysList) and listed.as_json


def test_autocorrected_dashes_and_smart_quotes() -> None:
    assert slash("keys create —name “my agent” —limit 3") == KeysCreate(
        name="my agent", credit_limit=Decimal(3)
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("credits buy --amount 4.99", "minimum purchase is $5.00"),
        ("credits buy", "missing --amount"),
        ("credits buy --amount lots", "--amount must be an amount"),
        ("credits buy --amount 5.555", "--amount has at most 2 decimals"),
        ("credits history --limit 0", "--limit must be a whole number 1-100"),
        ("credits history --type gift", "--type must be one of"),
        ("credits auto-topup --threshold 5", "go with --enable"),
        ("credits auto-topup --enable --disable", "not both"),
        ("keys create", "missing --name"),
        ("keys create --name x --limit-reset hourly", "--limit-reset must be one of"),
        ("keys create --name x --expires soon", "--expires must be a date"),
        ("keys list --filter usage~3", "--filter must be"),
        ("keys list --sort colour", "--sort must be one of"),
        ("keys info", "missing the key's <hash>"),
        ("keys info xyz", "16 hex characters"),
        (f"keys info {PROV}", "never the key itself"),
        (f"keys update {H}", "nothing to change"),
        (f"keys update {H} --enabled --disabled", "not both"),
        (f"keys usage {H} --interval 0", "--interval must be a whole number 1-300"),
        ("keys frobnicate", "unknown subcommand"),
        ("keys", "missing subcommand"),
        ("wallet balance", "unknown command"),
        ("credits balance --verbose", "unknown option"),
        ("credits balance extra", "unexpected argument"),
        ("integrate --status --remove", "not both"),
        (f"integrate {H} --name x", "don't apply"),
        ('keys create --name "open', "unbalanced quotes"),
        ("keys create --name", "--name needs a value"),
    ],
)
def test_usage_errors_carry_the_usage_line(text: str, problem: str) -> None:
    with pytest.raises(UsageError) as info:
        slash(text)
    assert problem in info.value.problem
    assert info.value.usage.startswith("/openclaw-token")


def test_errors_never_echo_a_key() -> None:
    with pytest.raises(UsageError) as info:
        slash(f"credits balance {PROV}")
    assert PROV not in str(info.value) and PROV not in info.value.problem


@pytest.mark.parametrize(
    "text",
    [
        "auth login --password hunter2",
        "auth login --email ada@example.com hunter2",
        "auth login ada@example.com hunter2",
        "auth login --email=notanemail",
        "auth register ada@example.com hunter2",
        "auth whoami -p hunter2",
    ],
)
def test_passwords_are_refused_not_parsed(text: str) -> None:
    assert slash(text) == PasswordInChat()


def test_text_trigger_needs_a_group() -> None:
    with pytest.raises(UsageError):
        parse("hey, openclaw-token credits balance please")
    assert parse("openclaw-token credits balance") == slash("credits balance")
    assert parse("so /openclaw-token keys list --sort name") == slash("keys list --sort name")
    assert parse("I like openclaw-token a lot") is None
    assert parse("see https://npmjs.com/openclaw-token credits") is None
    assert parse("openclaw-tokens credits balance") is None
    assert parse("/openclaw-token") == OpenClawHelp()
    with pytest.raises(UsageError):
        parse("/openclaw-token wallet")
    assert parse("nothing to see") is None
    with pytest.raises(UsageError):
        parse("openclaw-token credits buy --amount 1")


def test_other_slash_names_are_not_ours() -> None:
    assert parse_slash("/alltoken-chat", "credits balance") is None


WORDS = st.sampled_from(
    [
        *GROUPS,
        *(s for subs in SUBCOMMANDS.values() for s in subs),
        "--amount",
        "--limit",
        "--name",
        "--json",
        "--yes",
        "--watch",
        "--interval",
        "--filter",
        "--sort",
        "--email",
        "--password",
        "-h",
        "5",
        "14.54",
        "usage>3",
        "-usage",
        H,
        PROV,
        '"',
        "'",
        "—",
        "none",
        "openclaw-token",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(WORDS, max_size=8).map(" ".join)))
def test_any_text_parses_is_ignored_or_raises_usage_error(text: str) -> None:
    for attempt in (
        lambda: parse(text),
        lambda: parse(f"openclaw-token {text}"),
        lambda: slash(text),
    ):
        try:
            result = attempt()
        except UsageError as exc:
            assert exc.usage.startswith("/openclaw-token")
            assert PROV not in exc.problem
            continue
        assert result is None or isinstance(result, BaseModel)
