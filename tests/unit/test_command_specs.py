"""Command specs: one per command model, usage lines that parse, help and typed options from them."""

from __future__ import annotations

import re
import typing
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import BaseModel

from bot.backends.alltoken import catalog
from bot.backends.alltoken import grammar as alltoken_grammar
from bot.backends.alltoken import spec as alltoken_spec
from bot.backends.alltoken.help import help_text as alltoken_help
from bot.backends.openclaw_token import grammar as openclaw_grammar
from bot.backends.openclaw_token import spec as openclaw_spec
from bot.backends.openclaw_token.render import help_text as openclaw_help
from bot.backends.openmarlin import grammar as openmarlin_grammar
from bot.backends.openmarlin import spec as openmarlin_spec
from bot.backends.openmarlin.render import help_text as openmarlin_help
from bot.core.command_spec import CommandSpec, OptionValue
from bot.core.grammar import ParseState, UsageError, scan_flags

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
STATE = ParseState(now=lambda: NOW)
CTX = alltoken_grammar.RouterContext.from_state(STATE)
H = "0123456789abcdef"

ALL_SPECS: tuple[CommandSpec, ...] = (
    *alltoken_spec.SPECS,
    *openmarlin_spec.SPECS,
    *openclaw_spec.SPECS,
)


def parse_text(spec: CommandSpec, text: str) -> BaseModel | None:
    """Parse `text` with the grammar of the spec's family, as a chat message."""
    if spec.family == "alltoken":
        return alltoken_grammar.parse(text, CTX)
    if spec.family == "openmarlin":
        return openmarlin_grammar.parse(text, STATE)
    return openclaw_grammar.parse(text, STATE)


def options(spec: CommandSpec, values: dict[str, OptionValue]) -> BaseModel:
    """Build a command from typed values with the grammar of the spec's family."""
    if spec.family == "alltoken":
        return alltoken_grammar.parse_options(spec, values, CTX)
    if spec.family == "openmarlin":
        return openmarlin_grammar.parse_options(spec, values, STATE)
    return openclaw_grammar.parse_options(spec, values, STATE)


def spec_of(specs: tuple[CommandSpec, ...], model: type[BaseModel]) -> CommandSpec:
    [found] = [s for s in specs if s.model is model]
    return found


# --- one spec per command ------------------------------------------------------------------


def _union_members(union: object) -> set[type[BaseModel]]:
    args = typing.get_args(union)
    if args and typing.get_origin(union) is typing.Annotated:
        args = typing.get_args(args[0])
    return {a for a in args if isinstance(a, type) and issubclass(a, BaseModel)}


def _openclaw_commands() -> set[type[BaseModel]]:
    base: type[BaseModel] = openclaw_spec.OpenClawHelp.__mro__[1]  # the commands' base class
    found: set[type[BaseModel]] = {
        v
        for v in vars(openclaw_spec).values()
        if isinstance(v, type) and issubclass(v, base) and v is not base
    }
    # Not a command anyone types: the refusal the grammar gives for a password in chat.
    return found - {openclaw_spec.PasswordInChat}


@pytest.mark.parametrize(
    ("specs", "commands"),
    [
        (alltoken_spec.SPECS, _union_members(alltoken_spec.Command)),
        (openmarlin_spec.SPECS, _union_members(openmarlin_spec.OpenMarlinCommand)),
        (openclaw_spec.SPECS, _openclaw_commands()),
    ],
    ids=["alltoken", "openmarlin", "openclaw_token"],
)
def test_every_command_model_has_exactly_one_spec(
    specs: tuple[CommandSpec, ...], commands: set[type[BaseModel]]
) -> None:
    assert len(commands) >= 8
    counts = Counter(s.model for s in specs)
    assert {m: counts[m] for m in commands} == dict.fromkeys(commands, 1)
    assert set(counts) == commands  # no spec for something that is not a command
    assert len({s.key for s in specs}) == len(specs)
    assert len({s.path for s in specs}) == len(specs)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.key)
def test_each_example_parses_to_its_command(spec: CommandSpec) -> None:
    assert spec.examples
    for example in spec.examples:
        command = parse_text(spec, example)
        assert isinstance(command, spec.model or BaseModel), (example, command)


def _required_part(usage: str) -> str:
    """A usage line without its optional `[…]` parts: "/openclaw-token auth login"."""
    while (shorter := re.sub(r"\s*\[[^\[\]]*\]", "", usage)) != usage:
        usage = shorter
    return usage


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.key)
def test_each_usage_line_parses_or_gives_its_own_usage(spec: CommandSpec) -> None:
    """Typed as written (placeholders and all), a usage line is that command or its error."""
    try:
        command = parse_text(spec, _required_part(spec.usage))
    except UsageError as exc:
        assert exc.usage == spec.usage, exc
        assert exc.command == spec.key
    else:
        assert isinstance(command, spec.model or BaseModel), command
    # The whole line, options and all, is still read as a command (or refused with a reason).
    try:
        assert parse_text(spec, spec.usage) is not None
    except UsageError as exc:
        assert exc.problem and exc.usage


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.key)
def test_usage_errors_carry_the_spec_usage(spec: CommandSpec) -> None:
    usage = {"alltoken": alltoken_spec.USAGE, "openmarlin": openmarlin_spec.USAGE}.get(
        spec.family, {" ".join(s.path[1:]): s.usage for s in openclaw_spec.SPECS}
    )
    assert spec.usage in usage.values()
    for option in spec.options:
        assert option.description and len(option.description) <= 100
        assert option.kind != "choice" or option.choices
    assert len(spec.description) <= 100  # Discord's limit for a command's description


# --- one flag grammar ---------------------------------------------------------------------


def test_scan_flags_reads_every_spelling() -> None:
    tokens = ["a", "--size=auto", "--model", "gpt-image-2", "--watch", "b", "--size", "1024x1024"]
    scan = scan_flags("image", tokens, {"size": True, "model": True, "watch": False}, "u")
    assert scan.flags == {"size": "1024x1024", "model": "gpt-image-2", "watch": True}
    assert [tokens[i] for i in scan.positionals] == ["a", "b"]
    # A value may start with one dash ("--sort -usage"); punctuation after a bare flag is prose.
    scan = scan_flags("x", ["--sort", "-usage", "--sync."], {"sort": True, "sync": False}, "u")
    assert scan.flags == {"sort": "-usage", "sync": True}


@pytest.mark.parametrize(
    ("spelled", "problem"),
    [
        (["--sync=yes"], "--sync takes no value"),
        (["--size"], "--size needs a value (--size=VALUE)"),
        (["--size", "--sync"], "--size needs a value (--size=VALUE)"),
        (["--fps=30"], "unknown option '--fps'; use --size, --sync"),
        (["-size=auto"], "did you mean '--size=auto'? options take two dashes"),
    ],
)
def test_scan_flags_refuses_what_it_cannot_read(spelled: list[str], problem: str) -> None:
    with pytest.raises(UsageError) as info:
        scan_flags("image", spelled, {"size": True, "sync": False}, "the usage")
    assert info.value.problem == problem and info.value.usage == "the usage"


@pytest.mark.parametrize(
    ("family", "text", "suggestion"),
    [
        ("alltoken", "/alltoken-models -type=image", "'--type=image'"),
        ("alltoken", "/alltoken-image a cat -size=auto", "'--size=auto'"),
        ("alltoken", "/alltoken-chat -model=gpt-5.4 hi", "'--model=gpt-5.4'"),
        ("openclaw_token", "/openclaw-token credits history -limit=5", "'--limit=5'"),
        ("openclaw_token", "/openclaw-token auth login -email", "'--email'"),
        ("openmarlin", "use openmarlin to render a clip -duration=5s", "'--duration=5s'"),
    ],
)
def test_a_single_dash_option_is_the_same_usage_error_everywhere(
    family: str, text: str, suggestion: str
) -> None:
    spec = next(s for s in ALL_SPECS if s.family == family)
    with pytest.raises(UsageError) as info:
        parse_text(spec, text)
    assert f"did you mean {suggestion}?" in info.value.problem


def test_a_single_dash_word_that_is_no_option_stays_prose() -> None:
    command = alltoken_grammar.parse("/alltoken-image a -5 degree morning, -quiet", CTX)
    assert isinstance(command, alltoken_spec.ImageCommand)
    assert command.prompt == "a -5 degree morning, -quiet"


# --- typed options (Discord bug 3) --------------------------------------------------------


def test_a_typed_prompt_keeps_its_flag_shaped_words() -> None:
    spec = alltoken_spec.spec_for("image")
    prompt = "a poster reading --size=huge"
    command = options(spec, {"prompt": prompt, "size": "auto"})
    assert command == alltoken_spec.ImageCommand(prompt=prompt, size="auto")
    with pytest.raises(UsageError):  # the same words typed as text are a bad option
        alltoken_grammar.parse(f"/alltoken-image {prompt}", CTX)


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        ("chat", {"prompt": "--model=x hi"}, alltoken_spec.ChatCommand(prompt="--model=x hi")),
        (
            "chat",
            {"prompt": "hi", "model": "claude-sonnet-4-6"},
            alltoken_spec.ChatCommand(prompt="hi", model="claude-sonnet-4-6"),
        ),
        (
            "video",
            {"prompt": "a fox --ratio=1:1", "duration": 8, "resolution": "1080"},
            alltoken_spec.VideoCommand(prompt="a fox --ratio=1:1", duration=8, resolution="1080p"),
        ),
        (
            "search",
            {"query": "what is --sync", "model": "qwen3.6-flash"},
            alltoken_spec.SearchCommand(query="what is --sync", model="qwen3.6-flash"),
        ),
        ("models", {"type": "image"}, alltoken_spec.ModelsCommand(type="image")),
        ("cost", {}, alltoken_spec.CostCommand()),
        (
            "cost",
            {"model": "gpt-5.4-mini", "prompt_tokens": 10, "completion_tokens": 0},
            alltoken_spec.CostCommand(model="gpt-5.4-mini", prompt_tokens=10, completion_tokens=0),
        ),
        ("key", {}, alltoken_spec.KeyCommand(action="prompt")),
        ("key", {"action": "set"}, alltoken_spec.KeyCommand(action="prompt")),
        ("key", {"action": "status"}, alltoken_spec.KeyCommand(action="status")),
        ("help", {"topic": "video"}, alltoken_spec.HelpCommand(topic="video")),
    ],
)
def test_alltoken_typed_options(
    name: str, values: dict[str, OptionValue], expected: BaseModel
) -> None:
    assert options(alltoken_spec.spec_for(name), values) == expected


@pytest.mark.parametrize(
    ("name", "values", "needle"),
    [
        ("image", {"prompt": "x", "quality": "ultra"}, "--quality must be one of"),
        ("image", {"prompt": "   "}, "empty prompt"),
        ("chat", {"prompt": "hi", "model": "not a model"}, "unknown model"),
        ("video", {"prompt": "x", "duration": 99}, "--duration for seedance-1.5-pro"),
        ("search", {"query": "x", "model": "gpt-5.4"}, "does not support web search"),
        ("cost", {"model": "gpt-5.4"}, "got 1 argument"),
        # A typed key is one value: a space in it is no second argument.
        ("key", {"action": "set", "key": "sk-at-0123456789abcdef x"}, "does not look like"),
    ],
)
def test_alltoken_typed_options_are_checked_as_text_is(
    name: str, values: dict[str, OptionValue], needle: str
) -> None:
    spec = alltoken_spec.spec_for(name)
    with pytest.raises(UsageError) as info:
        options(spec, values)
    assert needle in info.value.problem and info.value.usage == spec.usage
    assert info.value.command == name


def test_openmarlin_typed_options() -> None:
    specs = openmarlin_spec.SPECS
    om = openmarlin_spec
    execute = options(
        spec_of(specs, om.OMExecute),
        {"instruction": "explain --model=x and video", "model": "openai-codex/gpt-5.4"},
    )
    # Never re-read: the flag stays words, and "video" does not turn it into a task.
    assert execute == om.OMExecute(
        instruction="explain --model=x and video", model="openai-codex/gpt-5.4"
    )
    task = options(
        spec_of(specs, om.OMTask),
        {"prompt": "a fox --sync", "duration": "7s", "aspect-ratio": "9:16"},
    )
    assert task == om.OMTask(prompt="a fox --sync", duration_ms=7000, aspect_ratio="9:16")
    assert options(spec_of(specs, om.OMTopUp), {"amount": "2.5"}) == om.OMTopUp(
        amount=Decimal("2.5")
    )
    assert options(spec_of(specs, om.OMRegister), {"browser": True}) == om.OMRegister(
        auth_flow="workos_callback"
    )
    assert options(spec_of(specs, om.OMKey), {}) == om.OMKey(action="prompt")
    assert options(spec_of(specs, om.OMTaskStatus), {"task_id": "t-1"}) == om.OMTaskStatus(
        task_id="t-1"
    )
    with pytest.raises(UsageError) as info:
        options(spec_of(specs, om.OMExecute), {"instruction": "hi", "model": "gpt-5.4"})
    assert "vendor/model" in info.value.problem and info.value.command == "openmarlin.execute"
    with pytest.raises(UsageError):
        options(spec_of(specs, om.OMTopUp), {"amount": "-5"})


def test_openclaw_typed_options() -> None:
    oc = openclaw_spec
    create = options(
        spec_of(oc.SPECS, oc.KeysCreate),
        {"name": "my --limit key", "limit": "10", "expires": "2099-12-31"},
    )
    assert create == oc.KeysCreate(
        name="my --limit key", credit_limit=Decimal(10), expires_at="2099-12-31T23:59:59Z"
    )
    usage = options(spec_of(oc.SPECS, oc.KeysUsage), {"hash": H, "interval": 10, "watch": False})
    assert usage == oc.KeysUsage(hash=H, watch=True, interval=10)
    listed = options(spec_of(oc.SPECS, oc.KeysList), {"include-revoked": True, "json": True})
    assert listed == oc.KeysList(include_revoked=True, as_json=True)
    assert options(spec_of(oc.SPECS, oc.AuthLogin), {"email": True}) == oc.AuthLogin(email=True)
    assert options(spec_of(oc.SPECS, oc.OpenClawHelp), {"topic": "keys"}) == oc.OpenClawHelp(
        topic="keys"
    )
    with pytest.raises(UsageError) as info:
        options(spec_of(oc.SPECS, oc.CreditsBuy), {"amount": "4"})
    assert "minimum purchase" in info.value.problem
    assert info.value.command == "openclaw-token credits buy"
    with pytest.raises(UsageError):
        options(spec_of(oc.SPECS, oc.KeysInfo), {"hash": "sk-prov-" + "ab" * 16})


@pytest.mark.parametrize(
    ("family", "parse_options"),
    [
        ("alltoken", alltoken_grammar.parse_options),
        ("openmarlin", openmarlin_grammar.parse_options),
        ("openclaw_token", openclaw_grammar.parse_options),
    ],
)
def test_parse_options_refuses_another_familys_spec(
    family: str, parse_options: Callable[[CommandSpec, dict[str, OptionValue]], BaseModel]
) -> None:
    others = [s for s in ALL_SPECS if s.family != family]
    assert others
    for spec in others:
        with pytest.raises(ValueError, match="command spec"):
            parse_options(spec, {})


# --- help from the specs ------------------------------------------------------------------


def test_alltoken_help_lists_every_command_and_the_default_model_once() -> None:
    text = alltoken_help()
    for spec in alltoken_spec.SPECS:
        if spec.model is not alltoken_spec.HelpCommand:
            assert spec.usage in text
    assert catalog.DEFAULT_CHAT_MODEL in text


def test_alltoken_help_points_to_the_other_families_and_the_platform_surfaces() -> None:
    text = alltoken_help()
    for other in ("`/openmarlin help`", "`/openclaw-token help`", "`/tokenbot help`"):
        assert other in text
    assert "assistant pane" in text and "**Home** tab" in text and "user install" in text


def test_alltoken_help_topic_is_used() -> None:
    assert alltoken_grammar.parse("/alltoken-help image", CTX) == alltoken_spec.HelpCommand(
        topic="image"
    )
    text = alltoken_help("image")
    assert alltoken_spec.USAGE["image"] in text and alltoken_spec.USAGE["video"] not in text
    assert "--quality" in text and "e.g. `/alltoken-image" in text
    assert alltoken_help("nonsense") == alltoken_help()


def test_openmarlin_and_openclaw_help_come_from_the_specs() -> None:
    om = openmarlin_help().markdown
    assert all(s.usage in om for s in openmarlin_spec.SPECS if s.path[-1] != "help")
    oc = openclaw_help().markdown
    assert all(s.usage in oc for s in openclaw_spec.SPECS if s.path[-1] != "help")
    keys = openclaw_help("keys").markdown
    assert "keys revoke-all" in keys and "credits buy" not in keys
