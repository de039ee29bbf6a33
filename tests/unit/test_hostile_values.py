"""Hostile input for every family's parser: a command, None, or that family's UsageError.

Never another exception (OverflowError from a date, a pydantic error, an encoder's surrogate
error later on), never a paid run for a near-miss, never a flag silently moved into a prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from bot.backends.alltoken import grammar as router
from bot.backends.alltoken.grammar import RouterContext
from bot.backends.alltoken.spec import USAGE as ALLTOKEN_USAGE
from bot.backends.alltoken.spec import ImageCommand, ModelsCommand, VideoCommand
from bot.backends.openclaw_token import grammar as openclaw_parser
from bot.backends.openclaw_token.spec import (
    CreditsBalance,
    CreditsBuy,
    KeysCreate,
    KeysList,
)
from bot.backends.openmarlin import grammar as openmarlin_router
from bot.backends.openmarlin.grammar import _SUBCOMMAND_WORDS
from bot.backends.openmarlin.spec import (
    OMActivity,
    OMBalance,
    OMExecute,
    OMHelp,
    OMKey,
    OMModels,
    OMRegister,
    OMStatus,
    OMTask,
    OMTopUp,
)
from bot.core.grammar import ParseState, UsageError, normalise_flag_token

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STATE = ParseState(now=lambda: NOW)
CTX = RouterContext.from_state(STATE)
H = "0123456789abcdef"


@dataclass(frozen=True)
class Family:
    name: str
    parse: Callable[..., BaseModel | None]
    parse_slash: Callable[..., BaseModel | None]
    slash_names: tuple[str, ...]
    is_own: Callable[[UsageError], bool]


ALLTOKEN = Family(
    "alltoken",
    router.parse,
    router.parse_slash,
    (
        "/alltoken",
        "/alltoken-chat",
        "/alltoken-image",
        "/alltoken-video",
        "/alltoken-search",
        "/alltoken-models",
        "/alltoken-cost",
        "/alltoken-key",
        "/alltoken-help",
    ),
    # One UsageError for every family: its command says whose it is.
    lambda exc: exc.command in ALLTOKEN_USAGE,
)
OPENMARLIN = Family(
    "openmarlin",
    openmarlin_router.parse,
    openmarlin_router.parse_slash,
    ("/openmarlin",),
    lambda exc: exc.command.startswith("openmarlin"),
)
OPENCLAW = Family(
    "openclaw",
    openclaw_parser.parse,
    openclaw_parser.parse_slash,
    ("/openclaw-token",),
    lambda exc: exc.command.startswith("openclaw-token"),
)
FAMILIES = (ALLTOKEN, OPENMARLIN, OPENCLAW)


def outcome(family: Family, *args: str) -> BaseModel | UsageError | None:
    """Run one parse; only the family's own UsageError may come out, with a usage line."""
    fn = family.parse_slash if len(args) == 2 else family.parse
    try:
        command = fn(*args, CTX if family is ALLTOKEN else STATE)
    except UsageError as exc:
        assert family.is_own(exc), f"{family.name} raised {type(exc).__name__}: {exc}"
        assert exc.problem and exc.usage
        return exc
    if command is not None:
        # What a handler would send on: it must encode (no lone surrogates left in it).
        command.model_dump_json().encode("utf-8")
    return command


def usage_error(family: Family, *args: str) -> UsageError:
    result = outcome(family, *args)
    assert isinstance(result, UsageError), f"{args!r} gave {result!r}, not a usage error"
    return result


# --- hostile values ------------------------------------------------------------------------

DATES = [
    "9999-12-31T23:59:59-12:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999-23:59",
    "2026-02-30",
    "0000-01-01",
    "10000-01-01",
    "2026-13-01",
    "31/12/2026",
    "tomorrow",
    "2026-05-13T25:00",
    "2026-05-13T10:00:00+25:00",
    "２０２６-１２-３１",
    "2020-01-01",
    "1970-01-01T00:00:00Z",
]
NUMBERS = [
    "-1",
    "0",
    "-0",
    "99999999999999999999",
    "9" * 5000,
    "NaN",
    "nan",
    "inf",
    "-inf",
    "1e309",
    "1e3",
    "0x10",
    "1_000",
    "٣",
    "５",
    "1.5",
    "+5",
    "5.",
    ".5",
    "",
]
SIZES = ["0x0", "99999x99999", "1x1", "1024x", "x1024", "1024×1024×2", "-1024x1024", "AUTO!"]
AMOUNTS = ["-5", "NaN", "inf", "1e309", "5.555", "0.001", "10000000000", "$-5", "five", "٥"]
IDS = ["", "x", "0123456789abcdeg", "0123456789ABCDEF0", "../../etc/passwd", "sk-prov-" + "a" * 32]
UNICODE = [
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff tail",
    "e\u0301\u0301\u0301",
    "\u202eexe.txt",
    "\u2066x\u2069",
    "\u200b",
    "\ufeff",
    "\U0001f468\u200d\U0001f469\u200d\U0001f467",
]
HOSTILE = DATES + NUMBERS + SIZES + AMOUNTS + IDS + UNICODE
LONG = "x" * 100_000


# --- grammar-aware strategies --------------------------------------------------------------

values = st.one_of(st.sampled_from(HOSTILE), st.text(max_size=8))
separators = st.sampled_from(["=", " ", "＝", "\u200b=", "=\u200b"])
dashes = st.sampled_from(["--", "—", "–", "--\u200b", "\u200b--", "－－"])


def flag(names: list[str]) -> st.SearchStrategy[str]:
    return st.builds(
        lambda d, n, s, v: f"{d}{n}{s}{v}", dashes, st.sampled_from(names), separators, values
    )


def message(prefixes: list[str], words: list[str], flags: list[str]) -> st.SearchStrategy[str]:
    body = st.lists(st.one_of(st.sampled_from(words), flag(flags), values), max_size=8)
    return st.builds(lambda p, b: " ".join([p, *b]), st.sampled_from(prefixes), body)


AT_FLAGS = ["size", "quality", "model", "duration", "ratio", "resolution", "type", "filter"]
AT_TEXT = message(
    [
        "/alltoken-image",
        "alltoken image",
        "/alltoken-video",
        "ALLTOKEN_video",
        "/alltoken-search",
        "/alltoken-models",
        "/alltoken-cost",
        "/alltoken-key",
        "/alltoken-help",
        "alltoken chat",
        "ask alltoken with model",
        "generate an image of a cat via alltoken",
        "make a video via alltoken",
        "what alltoken models are available",
    ],
    ["a cat", "gpt-5.4", "set", "remove", "status", "chat", "image", "video", "1000", "x"],
    AT_FLAGS,
)
AT_SLASH = st.tuples(
    st.sampled_from(ALLTOKEN.slash_names),
    message(["", "chat", "image", "video", "cost", "key set", "models"], ["a", "1"], AT_FLAGS),
)
OM_WORDS = [*_SUBCOMMAND_WORDS, "help", "task status", "status of task", "key set", "to"]
OM_WORDS += ["with model", "on provider", "with labels", "please", "now", "a/b", "x=y"]
OM_FLAGS = ["model", "provider", "labels", "duration", "aspect-ratio", "sync", "async"]
OM_TEXT = message(
    ["use openmarlin", "/openmarlin", "ask openmarlin", "use openmarlin to"], OM_WORDS, OM_FLAGS
)
OC_WORDS = [f"{g} {s}" for g, subs in openclaw_parser.SUBCOMMANDS.items() for s in subs]
OC_WORDS += [*openclaw_parser.GROUPS, H, "please", '"', "me@example.com"]
OC_FLAGS = ["name", "limit", "limit-reset", "expires", "amount", "threshold", "offset", "type"]
OC_FLAGS += ["filter", "sort", "interval", "enable", "disable", "yes", "json", "help", "email"]
OC_TEXT = message(["/openclaw-token", "openclaw-token", "OPENCLAW-TOKEN keys"], OC_WORDS, OC_FLAGS)
any_text = st.text(alphabet=st.characters(exclude_categories=()))


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
@given(text=any_text)
def test_any_text_is_total(family: Family, text: str) -> None:
    outcome(family, text)
    for name in family.slash_names:
        outcome(family, name, text)


@settings(max_examples=300)
@given(text=AT_TEXT)
def test_alltoken_grammar_is_total(text: str) -> None:
    outcome(ALLTOKEN, text)


@settings(max_examples=300)
@given(args=AT_SLASH)
def test_alltoken_slash_grammar_is_total(args: tuple[str, str]) -> None:
    outcome(ALLTOKEN, *args)


@settings(max_examples=300)
@given(text=OM_TEXT)
def test_openmarlin_grammar_is_total(text: str) -> None:
    outcome(OPENMARLIN, text)
    outcome(OPENMARLIN, "/openmarlin", text.split(" ", 1)[-1])


@settings(max_examples=300)
@given(text=OC_TEXT)
def test_openclaw_grammar_is_total(text: str) -> None:
    outcome(OPENCLAW, text)
    outcome(OPENCLAW, "/openclaw-token", text.split(" ", 1)[-1])


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", DATES[:-2])
def test_bad_or_out_of_range_expiry_is_a_usage_error(value: str) -> None:
    exc = usage_error(OPENCLAW, "/openclaw-token", f"keys create --name e3137 --expires {value}")
    assert "--expires" in exc.problem
    assert exc.usage.startswith("/openclaw-token keys create")


def test_the_reported_overflow_is_a_usage_error_naming_the_range() -> None:
    exc = usage_error(
        OPENCLAW, "/openclaw-token", "keys create --name e3137 --expires 9999-12-31T23:59:59-12:00"
    )
    assert "between now and 9999-12-31T23:59:59Z" in exc.problem


@pytest.mark.parametrize("value", ["2020-01-01", "1970-01-01T00:00:00Z", "2026-06-01T11:59:59Z"])
def test_a_past_expiry_is_refused_locally(value: str) -> None:
    exc = usage_error(OPENCLAW, "/openclaw-token", f"keys create --name old --expires {value}")
    assert "already past" in exc.problem


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("2026-06-01", "2026-06-01T23:59:59Z"),  # through the end of today
        ("2027-01-31T18:00:00+01:00", "2027-01-31T17:00:00Z"),
        ("9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"),
    ],
)
def test_future_expiries_are_kept_in_utc(value: str, stored: str) -> None:
    command = outcome(OPENCLAW, "/openclaw-token", f"keys create --name k --expires {value}")
    assert isinstance(command, KeysCreate) and command.expires_at == stored


# --- numbers, amounts, limits, durations, sizes --------------------------------------------

NUMERIC_FLAGS = [
    (OPENCLAW, "credits history --limit {v}", "--limit"),
    (OPENCLAW, "credits history --offset {v}", "--offset"),
    (OPENCLAW, "audit show --limit {v}", "--limit"),
    (OPENCLAW, f"keys usage {H} --interval {{v}}", "--interval"),
    (ALLTOKEN, "a wave --duration={v}", "--duration"),
    (OPENMARLIN, "to render a clip --duration={v}", "--duration"),
]
NOT_WHOLE = [n for n in NUMBERS if n not in ("1e3", "+5", "1.5", "5.", ".5", "")]


@pytest.mark.parametrize(("family", "template", "flag_name"), NUMERIC_FLAGS)
@pytest.mark.parametrize("value", NOT_WHOLE)
def test_hostile_numbers_name_the_flag(
    family: Family, template: str, flag_name: str, value: str
) -> None:
    name = "/alltoken-video" if family is ALLTOKEN else family.slash_names[0]
    result = outcome(family, name, template.format(v=value))
    if isinstance(result, UsageError):
        assert flag_name in result.problem
    else:
        # Only a plain in-range number may pass ("0" for --offset, "-1" as video "auto").
        assert value in ("0", "-1", "-0"), result


@pytest.mark.parametrize("value", ["٣", "５", "١٠"])
def test_non_ascii_digits_are_not_numbers(value: str) -> None:
    exc = usage_error(OPENCLAW, "/openclaw-token", f"credits history --limit {value}")
    assert "--limit must be a whole number 1-100" in exc.problem


@pytest.mark.parametrize("value", AMOUNTS)
@pytest.mark.parametrize(
    "template",
    [
        "credits buy --amount {v}",
        "credits auto-topup --enable --threshold {v}",
        "keys create --name k --limit {v}",
        f"keys update {H} --limit {{v}}",
    ],
)
def test_hostile_usd_amounts_are_usage_errors(template: str, value: str) -> None:
    exc = usage_error(OPENCLAW, "/openclaw-token", template.format(v=value))
    assert "--" in exc.problem and ("$" in exc.problem or "decimals" in exc.problem)


def test_amount_messages_are_specific() -> None:
    cases = {
        "-5": "not negative",
        "5.555": "at most 2 decimals",
        "10000000000": "$9,999,999.99",
        "NaN": "such as 25 or 14.50",
    }
    for value, needle in cases.items():
        exc = usage_error(OPENCLAW, "/openclaw-token", f"credits buy --amount {value}")
        assert needle in exc.problem, (value, exc.problem)
    assert outcome(OPENCLAW, "/openclaw-token", "credits buy --amount 1,000.5") == CreditsBuy(
        amount=Decimal("1000.5")
    )


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("-5", "above 0"),
        ("0", "above 0"),
        ("NaN", "number of credits"),
        ("inf", "number of credits"),
        ("1e309", "number of credits"),
        ("0x10", "number of credits"),
        ("٣", "number of credits"),
        ("５", "number of credits"),
        ("0.0000001", "at most 6 decimals"),
        ("100000.01", "at most 100000"),
        ("9" * 5000, "at most 100000"),
    ],
)
def test_hostile_top_ups(value: str, needle: str) -> None:
    exc = usage_error(OPENMARLIN, "/openmarlin", f"top up {value}")
    assert needle in exc.problem and exc.usage == "/openmarlin top up <amount>"


def test_a_sane_top_up_passes() -> None:
    assert outcome(OPENMARLIN, "/openmarlin", "top up 12.500001") == OMTopUp(
        amount=Decimal("12.500001")
    )


@pytest.mark.parametrize("value", [*SIZES, "1e309", "NaN", "５１２x５１２"])
def test_hostile_image_sizes(value: str) -> None:
    exc = usage_error(ALLTOKEN, "/alltoken-image", f"a cat --size={value}")
    assert "--size must be one of" in exc.problem and "256-4096" in exc.problem


@pytest.mark.parametrize("value", ["0", "99999", "-5", "1e309", "NaN", "٥"])
def test_hostile_video_durations(value: str) -> None:
    exc = usage_error(ALLTOKEN, "/alltoken-video", f"waves --duration={value}")
    assert "--duration" in exc.problem and "seconds" in exc.problem


@pytest.mark.parametrize("value", ["0:9", "16:0", "100:1", "16/9", "NaN"])
def test_hostile_aspect_ratios(value: str) -> None:
    exc = usage_error(OPENMARLIN, "/openmarlin", f"to make a video --aspect-ratio={value}")
    assert "--aspect-ratio" in exc.problem


@pytest.mark.parametrize("value", NUMBERS)
def test_hostile_token_counts(value: str) -> None:
    result = outcome(ALLTOKEN, "/alltoken-cost", f"gpt-5.4 {value} 10")
    assert isinstance(result, UsageError) or value == "0"


# --- ids and hashes ------------------------------------------------------------------------


@pytest.mark.parametrize("value", IDS + UNICODE)
def test_hostile_hashes(value: str) -> None:
    for template in ("keys info {v}", "keys revoke {v}", "keys usage {v} --watch"):
        exc = usage_error(OPENCLAW, "/openclaw-token", template.format(v=repr(value)))
        assert "hash" in exc.problem or "unexpected" in exc.problem or "quotes" in exc.problem
        assert "sk-prov-aaaa" not in str(exc)


@pytest.mark.parametrize("value", ["../x", "a b!", "\u202etask", "x" * 300])
def test_hostile_task_ids(value: str) -> None:
    exc = usage_error(OPENMARLIN, "/openmarlin", f"task status {value}")
    assert exc.command == "openmarlin.task_status"


# --- unicode and size ----------------------------------------------------------------------

UNICODE_MESSAGES = [
    "/alltoken-chat {v}",
    "/alltoken-image {v} --size=auto",
    "/alltoken-search {v}",
    "/alltoken-models {v}",
    "/alltoken-cost {v}",
    "/alltoken-key set {v}",
    "use openmarlin to {v}",
    "/openmarlin top up {v}",
    "/openmarlin models {v}",
    "/openmarlin to say hi with labels a={v}",
    "/openclaw-token keys create --name 'a{v}'",
    "/openclaw-token credits buy {v}",
    "/openclaw-token help {v}",
    "/openclaw-token auth login --email {v}",
]


@pytest.mark.parametrize("template", UNICODE_MESSAGES)
@pytest.mark.parametrize("value", [*UNICODE, LONG, "x\n" * 50_000])
def test_unicode_and_long_values(template: str, value: str) -> None:
    text = template.format(v=value)
    for family in FAMILIES:
        outcome(family, text)


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.name)
def test_long_lines_are_total(family: Family) -> None:
    for filler in (" " * 100_000 + "x", "?" * 100_000, "--a " * 25_000, "— " * 50_000):
        outcome(family, f"{family.slash_names[0]} {filler}")
        for name in family.slash_names:
            outcome(family, name, filler)


def test_lone_surrogates_are_replaced_where_text_enters() -> None:
    chat = outcome(ALLTOKEN, "alltoken chat hi \ud800 there")
    assert chat is not None and "\ufffd" in getattr(chat, "prompt", "")
    run = outcome(OPENMARLIN, "/openmarlin", "to say \udfff hi")
    assert isinstance(run, OMExecute) and run.instruction == "say \ufffd hi"
    key = outcome(OPENCLAW, "/openclaw-token", "keys create --name a\ud800b")
    assert isinstance(key, KeysCreate) and key.name == "a\ufffdb"


@pytest.mark.parametrize("value", ["a\x00b", "\u202eevil", "a\u2066b", "bell\x07"])
def test_key_names_refuse_invisible_controls(value: str) -> None:
    exc = usage_error(OPENCLAW, "/openclaw-token", f"keys create --name '{value}'")
    assert "control or text-direction" in exc.problem


def test_combining_characters_and_emoji_are_fine_in_names() -> None:
    for name in ("e\u0301clair", "\U0001f468\u200d\U0001f469\u200d\U0001f467 team"):
        command = outcome(OPENCLAW, "/openclaw-token", f"keys create --name '{name}'")
        assert isinstance(command, KeysCreate) and command.name == name


# --- flag spelling ------------------------------------------------------------------------

SIZE_SPELLINGS = [
    "--size\u200b=auto",
    "--\u200bsize=auto",
    "\u200b--size=auto",
    "--size=\u200bauto",
    "—size=auto",
    "–size=auto",
    "--size＝auto",
    "--ｓｉｚｅ=auto",
    "－－size=auto",
    "--si\u2060ze=auto",
    "--size\ufeff auto",
]


@pytest.mark.parametrize("spelled", SIZE_SPELLINGS)
def test_alltoken_flags_survive_odd_spelling(spelled: str) -> None:
    assert outcome(ALLTOKEN, f"/alltoken-image a cat {spelled}") == ImageCommand(
        prompt="a cat", size="auto"
    )
    video = outcome(ALLTOKEN, "/alltoken-video", f"waves {spelled.replace('size', 'ratio')}")
    assert isinstance(video, UsageError) and "--ratio" in video.problem  # "auto" is no ratio


def test_alltoken_unknown_em_dash_words_stay_prose() -> None:
    assert outcome(ALLTOKEN, "/alltoken-image a cat —this one") == ImageCommand(
        prompt="a cat —this one"
    )
    assert outcome(ALLTOKEN, "/alltoken-models", "—type=image") == ModelsCommand(type="image")
    assert outcome(ALLTOKEN, "/alltoken-video", "x --\u200bduration=6") == VideoCommand(
        prompt="x", duration=6
    )


@pytest.mark.parametrize(
    "spelled", ["--\u200bsync", "--sync\u200b", "—sync", "–sync", "--ｓｙｎｃ", "\ufeff--sync"]
)
def test_openmarlin_flags_survive_odd_spelling(spelled: str) -> None:
    assert outcome(OPENMARLIN, "/openmarlin", f"to make a video {spelled}") == OMExecute(
        instruction="make a video"
    )


def test_openmarlin_valued_flags_survive_odd_spelling() -> None:
    command = outcome(
        OPENMARLIN, "/openmarlin", "to render a clip —duration＝7s --aspect\u200b-ratio 9:16"
    )
    assert command == OMTask(prompt="render a clip", duration_ms=7000, aspect_ratio="9:16")


@pytest.mark.parametrize(
    "spelled",
    ["--filter\u200b=active", "—filter=active", "--ｆｉｌｔｅｒ＝active", "--\u200bfilter active"],
)
def test_openclaw_flags_survive_odd_spelling(spelled: str) -> None:
    command = outcome(OPENCLAW, "/openclaw-token", f"keys list {spelled}")
    assert isinstance(command, KeysList) and command.filter is not None
    assert command.filter.kind == "active"


def test_normalise_flag_token_leaves_words_alone() -> None:
    for word in ("hello", "—", "--", "-5", "—5", "a--size=x", "x\u200b", "——size=auto"):
        assert normalise_flag_token(word, ("size",)) == word
    assert normalise_flag_token("—name", ("size",)) == "—name"
    assert normalise_flag_token("—name") == "--name"


# --- near-miss words never spend money ----------------------------------------------------

FREE = (OMActivity, OMBalance, OMHelp, OMKey, OMModels, OMRegister, OMStatus)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("balance please", OMBalance()),
        ("status now", OMStatus()),
        ("status now, thanks!", OMStatus()),
        ("models gpt please", OMModels(filter="gpt")),
        ("key please", OMKey(action="prompt")),
        ("register please", OMRegister()),
        ("ledger", OMActivity()),
        ("help me write a poem", OMHelp()),
    ],
)
def test_politeness_after_a_subcommand_is_that_subcommand(text: str, expected: BaseModel) -> None:
    assert outcome(OPENMARLIN, "/openmarlin", text) == expected
    assert outcome(OPENMARLIN, f"use openmarlin {text}") == expected


@pytest.mark.parametrize(
    ("text", "usage"),
    [
        ("models gpt extra", "/openmarlin models [filter]"),
        ("status report of our Q3 sales in a table", "/openmarlin status"),
        ("balance sheet for ACME", "/openmarlin balance"),
        ("activity feed summary", "/openmarlin activity"),
        ("key to the city", "/openmarlin key [set claw_wsk_… | remove | status]"),
        ("task list", "/openmarlin task status <task id>"),
        ("tasks", "/openmarlin task status <task id>"),
        ("sign up for the newsletter", "/openmarlin register [browser]"),
        ("referral program ideas", "/openmarlin referral link"),
    ],
)
def test_a_subcommand_word_with_extra_words_is_a_usage_error(text: str, usage: str) -> None:
    for args in (("/openmarlin", text), (f"use openmarlin {text}",), (f"ask openmarlin {text}",)):
        exc = usage_error(OPENMARLIN, *args)
        assert exc.usage == usage, args
        assert "use openmarlin to" in exc.problem  # how to run it as an instruction instead


def test_cancel_is_not_a_paid_run() -> None:
    exc = usage_error(OPENMARLIN, "/openmarlin", "cancel")
    assert "cannot cancel" in exc.problem


@pytest.mark.parametrize(
    "text",
    [
        "to status report of our Q3 sales in a table",
        "to balance these two columns",
        "run status checks",
    ],
)
def test_to_or_another_first_word_makes_it_an_instruction(text: str) -> None:
    command = outcome(OPENMARLIN, "/openmarlin", text)
    assert isinstance(command, OMExecute)


@settings(max_examples=300)
@given(
    word=st.sampled_from(sorted(_SUBCOMMAND_WORDS)),
    extra=st.lists(
        st.sampled_from(["please", "now", "report", "of", "Q3", "extra", "10", "x"]), max_size=4
    ),
    opener=st.sampled_from(["use openmarlin", "ask openmarlin", "/openmarlin", "use openmarlin:"]),
)
def test_no_subcommand_word_starts_a_paid_run(word: str, extra: list[str], opener: str) -> None:
    text = " ".join([opener, word, *extra])
    result = outcome(OPENMARLIN, text)
    assert not isinstance(result, OMExecute | OMTask), text


@pytest.mark.parametrize(
    "text",
    [
        "credits please",
        "credits balance please",
        "keys list please",
        "keys please",
        "audit show please",
        "auth whoami now",
        "integrate please",
        "please",
    ],
)
def test_openclaw_near_misses_are_usage_errors(text: str) -> None:
    exc = usage_error(OPENCLAW, "/openclaw-token", text)
    assert exc.usage.startswith("/openclaw-token")
    typed = outcome(OPENCLAW, f"openclaw-token {text}")
    assert isinstance(typed, UsageError) or typed is None


def test_openclaw_exact_forms_still_parse() -> None:
    assert outcome(OPENCLAW, "/openclaw-token", "credits balance") == CreditsBalance()


@pytest.mark.parametrize(
    "text", ["/alltoken-models gpt extra", "alltoken models gpt extra", "/alltoken-cost please now"]
)
def test_alltoken_near_misses_are_usage_errors(text: str) -> None:
    usage_error(ALLTOKEN, text)
    name, _, rest = text.partition(" ")
    if name.startswith("/"):
        usage_error(ALLTOKEN, name, rest)
