"""compose.yaml uses only commands, flags and settings tokenbot has, and wires PostgreSQL in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices

from bot.cli import build_parser
from bot.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def test_compose_commands_and_flags_exist() -> None:
    parser = build_parser()
    for name, service in _compose()["services"].items():
        command = service.get("command")
        if command is None or service.get("image", "").startswith("postgres"):
            continue
        parser.parse_args(command)  # exits (SystemExit) on an unknown subcommand or flag
        assert name


def test_compose_sets_only_documented_settings() -> None:
    documented = {
        str(choice)
        for field in Settings.model_fields.values()
        if isinstance(field.validation_alias, AliasChoices)
        for choice in field.validation_alias.choices
    }
    assert "ALLTOKEN_BASE_URL" in documented
    services = _compose()["services"]
    for name in ("tokenbot", "migrate"):
        names = set(services[name].get("environment", {}))
        assert names <= documented, (name, names - documented)
    tokenbot = services["tokenbot"]
    assert tokenbot["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "3000:3000" in tokenbot["ports"] and "tokenbot-data:/data" in tokenbot["volumes"]
    url = tokenbot["environment"]["TOKENBOT_DATABASE_URL"]
    user = services["postgres"]["environment"]["POSTGRES_USER"]
    assert url.startswith(f"postgresql://{user}:") and "@postgres:5432/" in url
