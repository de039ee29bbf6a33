"""Settings: environment, the TOKENBOT_CONFIG file, and the example file shipped in config/."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_env_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENBOT_CONFIG", str(ROOT / "config" / "tokenbot.example.env"))
    s = load_settings()
    assert s.alltoken_base_url == "https://api.alltoken.ai"
    assert s.openmarlin_server_url == "https://api.openmarlin.ai"
    assert s.http_port == 3000 and s.admin_ids == frozenset()


def test_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    conf = tmp_path / "t.env"
    conf.write_text("ALLTOKEN_BASE_URL=http://from-file/\nTOKENBOT_ADMINS=U1, U2\n")
    monkeypatch.setenv("TOKENBOT_CONFIG", str(conf))
    monkeypatch.setenv("ALLTOKEN_BASE_URL", "http://from-env/")
    s = load_settings()
    assert s.alltoken_base_url == "http://from-env"  # trailing slash dropped
    assert s.admin_ids == frozenset({"U1", "U2"})


def test_openmarlin_url_must_be_a_bare_origin() -> None:
    with pytest.raises(ValidationError, match="bare origin"):
        Settings(openmarlin_server_url="https://api.openmarlin.ai/v1")
