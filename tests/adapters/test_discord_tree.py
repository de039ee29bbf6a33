"""The Discord command tree built from command specs: groups, typed options, limits, no circles."""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import discord
import pytest

from adapters.discord.commands import MAX_ENTRIES, build_tree, echo_text, subcommand_of
from adapters.discord.sync import payload_hash, tree_payload
from bot.core.command_spec import CommandSpec, OptionSpec, OptionValue

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "adapters" / "discord"


def spec(*path: str, options: tuple[OptionSpec, ...] = (), description: str = "d") -> CommandSpec:
    return CommandSpec(
        family="demo",
        path=path,
        usage="/" + " ".join(path),
        description=description,
        options=options,
    )


CREATE = spec(
    "demo",
    "keys",
    "create",
    options=(
        OptionSpec(name="name", description="Key name", required=True),
        OptionSpec(name="limit", kind="float", description="USD", min_value=0),
        OptionSpec(
            name="limit-reset", kind="choice", description="When", choices=("daily", "weekly")
        ),
        OptionSpec(name="enable", kind="bool", description="On or off"),
        OptionSpec(name="count", kind="int", description="How many", min_value=1, max_value=9),
        OptionSpec(name="model", description="A model", suggest="models:chat"),
    ),
)
LOGIN = spec(
    "demo",
    "auth",
    "login",
    options=(
        OptionSpec(name="email", kind="bool", description="Sign in by email"),
        OptionSpec(name="password", description="Your password", secret=True),
    ),
)
WHOAMI = spec("demo", "whoami")
SINGLE = spec(
    "single",
    options=(OptionSpec(name="prompt", description="What to say", required=True, positional=True),),
)


class Runner:
    """A SlashRunner over fixed specs; remembers what it was asked."""

    def __init__(self, specs: list[CommandSpec], free: tuple[str, ...] = ()) -> None:
        self.specs = specs
        self.free = free
        self.asked: list[str] = []

    @property
    def slash_commands(self) -> list[str]:
        return list(dict.fromkeys([s.slash for s in self.specs] + list(self.free)))

    def specs_for(self, slash: str) -> tuple[CommandSpec, ...]:
        return tuple(s for s in self.specs if s.slash == slash)

    def family_label(self, slash: str) -> str:
        return "Demo"

    def suggestions(self, kind: str) -> list[str]:
        self.asked.append(kind)
        return ["claude-haiku-4-5", "gpt-5.4-mini"]

    async def run_slash(
        self,
        interaction: discord.Interaction,
        command: str,
        text: str,
        *,
        options: dict[str, OptionValue] | None = None,
        subcommand: str | None = None,
        defer: bool = True,
    ) -> None:
        raise AssertionError("not run in these tests")


async def payload(runner: Runner) -> list[dict[str, Any]]:
    client = discord.Client(intents=discord.Intents.none())
    try:
        tree = build_tree(client, runner)
        return tree_payload(tree, None)
    finally:
        await client.close()


def option(entries: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(e for e in entries if e["name"] == name)


async def test_deeper_specs_become_subcommand_groups_with_typed_options() -> None:
    (demo,) = await payload(Runner([CREATE, WHOAMI, LOGIN]))
    assert demo["name"] == "demo" and "keys" in demo["description"]
    top = [(e["name"], e["type"]) for e in demo["options"]]
    assert top == [("keys", 2), ("whoami", 1), ("auth", 2)]  # 2 = group, 1 = subcommand
    create = option(option(demo["options"], "keys")["options"], "create")
    assert create["type"] == 1
    opts = create["options"]
    assert opts[0]["name"] == "name" and opts[0]["required"] is True  # required first
    assert {o["name"]: o["type"] for o in opts} == {
        "name": 3,
        "limit": 10,
        "limit-reset": 3,
        "enable": 5,
        "count": 4,
        "model": 3,
    }
    assert option(opts, "limit")["min_value"] == 0 and "max_value" not in option(opts, "limit")
    assert (option(opts, "count")["min_value"], option(opts, "count")["max_value"]) == (1, 9)
    assert [c["value"] for c in option(opts, "limit-reset")["choices"]] == ["daily", "weekly"]
    assert option(opts, "model")["autocomplete"] is True


async def test_secret_options_are_never_discord_options() -> None:
    (demo,) = await payload(Runner([LOGIN]))
    login = option(option(demo["options"], "auth")["options"], "login")
    assert [o["name"] for o in login["options"]] == ["email"]


async def test_a_one_level_spec_is_a_plain_command_and_free_text_stays() -> None:
    single, other = await payload(Runner([SINGLE], free=("/other",)))
    assert single["name"] == "single" and [o["name"] for o in single["options"]] == ["prompt"]
    assert option(single["options"], "prompt")["required"] is True
    assert other["name"] == "other" and [o["name"] for o in other["options"]] == ["text"]


async def test_levels_beyond_discords_limits_are_dropped_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    many = [spec("demo", f"c{i}") for i in range(MAX_ENTRIES + 3)]
    with caplog.at_level(logging.ERROR, logger="adapters.discord.commands"):
        (demo,) = await payload(Runner(many))
    assert len(demo["options"]) == MAX_ENTRIES
    assert "25 entries already" in caplog.text


async def test_the_payload_hash_is_stable_and_follows_the_specs() -> None:
    runner = Runner([CREATE, WHOAMI, SINGLE])
    first, again = await payload(runner), await payload(runner)
    assert payload_hash(first) == payload_hash(again)
    changed = CREATE.model_copy(update={"description": "Make a key"})
    assert payload_hash(await payload(Runner([changed, WHOAMI, SINGLE]))) != payload_hash(first)


def test_values_are_echoed_readably_and_the_subcommand_named() -> None:
    values: dict[str, OptionValue] = {"name": "ci bot", "enable": True, "limit": 2.5}
    assert echo_text(CREATE, values) == "keys create --name=ci bot --limit=2.5 --enable"
    assert echo_text(SINGLE, {"prompt": "a poster reading --size=huge"}) == (
        "a poster reading --size=huge"
    )
    assert subcommand_of(CREATE) == "keys create"
    assert subcommand_of(WHOAMI) == "whoami"
    assert subcommand_of(SINGLE) is None


def _imports(path: Path) -> set[str]:
    """Modules a file imports, `if TYPE_CHECKING:` ones included (ast sees them all)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def test_the_adapter_imports_no_backend_and_has_no_import_circle() -> None:
    modules = {
        f"adapters.discord.{p.stem}": p for p in ADAPTER.glob("*.py") if p.stem != "__init__"
    }
    edges = {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}
    for module, path in modules.items():
        assert not [i for i in _imports(path) if i.startswith("bot.backends")], module

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(
            n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges[start]
        )

    circles = [m for m in modules if reaches(m, m, {m})]
    assert circles == [], edges
