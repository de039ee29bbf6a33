"""Settings: environment, the TOKENBOT_CONFIG file, and the example file shipped in config/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import AliasChoices, ValidationError

from bot.core.settings import Settings, load_settings

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


# --- Only the documented names configure tokenbot ----------------------------------------

FIELDS = Settings.model_fields


def _documented(name: str) -> tuple[str, ...]:
    alias = FIELDS[name].validation_alias
    assert isinstance(alias, AliasChoices)
    return tuple(str(choice) for choice in alias.choices)


DOCUMENTED = frozenset(n.upper() for f in FIELDS for n in _documented(f))


def _stray_names(name: str) -> set[str]:
    """Generic names a container or CI might set: the bare field name, the unprefixed one."""
    names = {name.upper()}
    names |= {d.removeprefix("TOKENBOT_") for d in _documented(name)}
    return names - DOCUMENTED


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No documented variable, stray name or config file from the environment running tests."""
    for name in [*DOCUMENTED, *(s for f in FIELDS for s in _stray_names(f)), "TOKENBOT_CONFIG"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _effective_value(name: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A value that does change `name` when given under its documented variable."""
    baseline = Settings().model_dump()[name]
    for value in ("true", "false", "4242", "42.5", "DEBUG", "http://stray.example"):
        with monkeypatch.context() as m:
            m.setenv(_documented(name)[0], value)
            try:
                changed = Settings().model_dump()[name]
            except ValidationError:
                continue
        if changed != baseline:
            return value
    raise AssertionError(f"no test value changes {name}")


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_undocumented_names_change_nothing(
    name: str, clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stray = _stray_names(name)
    if not stray:
        # Named after its documented variable (ALLTOKEN_BASE_URL, SLACK_BOT_TOKEN …).
        assert name.upper() in DOCUMENTED
        return
    baseline = Settings().model_dump()
    value = _effective_value(name, clean_env)
    for variable in stray:
        clean_env.setenv(variable, value)
    assert Settings().model_dump() == baseline, f"{sorted(stray)} configured {name}"
    # Nor as lines of the TOKENBOT_CONFIG file (upper- or lower-case).
    conf = tmp_path / "stray.env"
    conf.write_text("".join(f"{v}={value}\n{v.lower()}={value}\n" for v in stray))
    for variable in stray:
        clean_env.delenv(variable)
    clean_env.setenv("TOKENBOT_CONFIG", str(conf))
    assert load_settings().model_dump() == baseline, f"{sorted(stray)} in the file set {name}"


def test_a_stray_admins_makes_nobody_an_admin(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("ADMINS", "mallory")
    clean_env.setenv("admins", "mallory")
    conf = tmp_path / "t.env"
    conf.write_text("ADMINS=mallory\nadmins=mallory\n")
    clean_env.setenv("TOKENBOT_CONFIG", str(conf))
    assert load_settings().admin_ids == frozenset()
    clean_env.setenv("TOKENBOT_ADMINS", "slack:U1")
    assert load_settings().admin_ids == frozenset({"slack:U1"})


def test_documented_names_and_keywords_still_work(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("TOKENBOT_DATA_DIR", str(tmp_path / "env"))
    clean_env.setenv("TOKENBOT_HTTP_PORT", "3111")
    clean_env.setenv("SLACK_BOT_TOKEN", "xoxb-from-env")
    clean_env.setenv("DISCORD_API_URL", "http://127.0.0.1:1/api/v10")
    clean_env.setenv("OPENMARLIN_SERVER_URL", "http://127.0.0.1:2")
    s = load_settings()
    assert s.data_dir == tmp_path / "env" and s.http_port == 3111
    assert s.slack_bot_token is not None and s.slack_bot_token.get_secret_value() == "xoxb-from-env"
    assert s.discord_api_url == "http://127.0.0.1:1/api/v10"
    assert s.openmarlin_server_url == "http://127.0.0.1:2"
    # Keyword arguments use the field names and win over the environment.
    k = Settings(data_dir=tmp_path / "kw", admins="U9", http_port=3222)
    assert k.data_dir == tmp_path / "kw" and k.admin_ids == {"U9"} and k.http_port == 3222


def test_log_level_is_checked(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TOKENBOT_LOG_LEVEL", "debug-all")
    assert load_settings().log_level == "DEBUG-ALL"
    clean_env.setenv("TOKENBOT_LOG_LEVEL", "chatty")
    with pytest.raises(ValidationError, match="TOKENBOT_LOG_LEVEL must be"):
        load_settings()


# --- The simulators' pacing is settings like any other -----------------------------------


def test_a_sim_line_in_the_config_file_takes_effect(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.sim.cluster import SimCluster

    conf = tmp_path / "t.env"
    conf.write_text(
        "TOKENBOT_SIM_LATENCY_MS=7\nTOKENBOT_SIM_VIDEO_URL_TTL=90\n"
        "TOKENBOT_SIM_OPENMARLIN_TASK_SECONDS=10\nTOKENBOT_SIM_IMAGE_SECONDS=\n"
    )
    clean_env.setenv("TOKENBOT_CONFIG", str(conf))
    clean_env.setenv("TOKENBOT_SIM_TOKENS_PER_SECOND", "3")  # the environment still works
    s = load_settings()
    assert (s.sim_latency_ms, s.sim_video_url_ttl_s, s.sim_image_seconds) == (7.0, 90.0, None)
    cluster = SimCluster()  # not started: only its configuration is read
    alltoken = cluster.alltoken.config
    assert (alltoken.latency_ms, alltoken.video_url_ttl_s, alltoken.tokens_per_second) == (7, 90, 3)
    assert alltoken.image_seconds == 2.0  # empty line: the demo default
    openmarlin = cluster.get("openmarlin").config
    assert (openmarlin.task_queue_s, openmarlin.task_run_s) == (2.0, 8.0)
    assert (openmarlin.latency_ms, openmarlin.tokens_per_second) == (7, 3)


def test_every_sim_variable_is_a_documented_setting() -> None:
    sim_code = "".join(p.read_text() for p in (ROOT / "bot").rglob("*.py"))
    read = set(re.findall(r"TOKENBOT_SIM_[A-Z_]+", sim_code))
    assert read and read <= DOCUMENTED
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "config" / "tokenbot.example.env").read_text()
    for name in sorted(n for n in DOCUMENTED if n.startswith("TOKENBOT_SIM_")):
        assert f"`{name}`" in readme, name
        assert f"{name}=" in example, name


def test_every_variable_is_tokenbots_a_backends_or_a_platforms() -> None:
    prefixes = ("TOKENBOT_", "ALLTOKEN_", "OPENMARLIN_", "OPENCLAW_", "SLACK_", "DISCORD_")
    assert all(name.startswith(prefixes) for name in DOCUMENTED), sorted(DOCUMENTED)
