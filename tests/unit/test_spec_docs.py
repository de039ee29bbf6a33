"""The command specs are the one list of commands: the Slack manifest and the README's command
table must name every one of them, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.core.app import default_families
from bot.core.command_spec import CommandSpec

ROOT = Path(__file__).resolve().parents[2]
SPECS = [spec for family in default_families() for spec in family.specs]


def _command_words(spec: CommandSpec) -> list[str]:
    """The fixed words of the usage line: "/openclaw-token keys create", "use openmarlin to"."""
    words = []
    for word in spec.usage.split():
        if word[0] in "[<-|" or not re.fullmatch(r"[/a-z][a-z0-9-]*", word):
            break
        words.append(word)
    return words


def _readme_rows() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Commands", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_the_manifest_declares_exactly_the_specs_slash_commands() -> None:
    manifest = (ROOT / "config" / "slack-app-manifest.yaml").read_text(encoding="utf-8")
    declared = set(re.findall(r"- command: (/\S+)", manifest))
    assert declared == {spec.slash for spec in SPECS}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.display)
def test_the_readme_table_lists_every_command(spec: CommandSpec) -> None:
    words = _command_words(spec)
    assert words, spec.usage
    rows = [row for row in _readme_rows() if f"`{words[0]}" in row or f"`{words[0]} " in row]
    assert rows, f"no README command row mentions {words[0]!r}"

    def named(row: str) -> bool:
        return all(re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", row) for w in words[1:])

    assert any(named(row) for row in rows), f"no README row for {words[0]} names {words[1:]}"


def test_the_word_finder_reads_usage_lines() -> None:
    by_display = {spec.display: spec for spec in SPECS}
    assert _command_words(by_display["/openclaw-token keys create"]) == [
        "/openclaw-token",
        "keys",
        "create",
    ]
    assert _command_words(by_display["/alltoken-image"]) == ["/alltoken-image"]
