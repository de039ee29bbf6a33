"""Static checks of the Dockerfile, .dockerignore and compose.yaml: what the image must do
(pinned base, cached dependency layer, non-root, health check, stop signal) and that compose
only uses commands, flags and settings tokenbot has."""

from __future__ import annotations

import re
from pathlib import Path

from bot.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
INSTRUCTIONS = [
    line.split(None, 1)
    for line in re.sub(r"\\\n\s*", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _all(name: str) -> list[str]:
    return [rest for instruction, rest in INSTRUCTIONS if instruction.upper() == name]


def test_the_base_image_is_pinned_and_slim() -> None:
    [base] = _all("FROM")
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base


def test_dependencies_install_before_the_code_is_copied() -> None:
    order = [f"{i} {r}" for i, r in INSTRUCTIONS]
    deps = next(n for n, line in enumerate(order) if line.startswith("COPY pyproject.toml"))
    install = next(n for n, line in enumerate(order) if "pip install" in line)
    code = next(n for n, line in enumerate(order) if line.startswith("COPY bot"))
    assert deps < install < code


def test_it_runs_as_a_user_owning_the_paths_it_writes() -> None:
    [user] = _all("USER")
    assert user not in ("root", "0")
    order = [i for i, _ in INSTRUCTIONS]
    assert order.index("USER") < order.index("ENTRYPOINT")
    [workdir] = _all("WORKDIR")[-1:]
    assert workdir == "/data" and "chown tokenbot:tokenbot /data" in DOCKERFILE
    # The data dir's default and the example env's value are relative: they land in /data.
    assert not Settings.model_fields["data_dir"].default.is_absolute()
    example = (ROOT / "config" / "tokenbot.example.env").read_text(encoding="utf-8")
    assert "TOKENBOT_DATA_DIR=./tokenbot-data" in example
    assert "ENV TOKENBOT_DATA_DIR" not in DOCKERFILE


def test_health_check_stop_signal_and_port() -> None:
    [health] = _all("HEALTHCHECK")
    assert "/healthz" in health and "TOKENBOT_HTTP_PORT" in health
    assert _all("STOPSIGNAL") == ["SIGTERM"]
    assert _all("EXPOSE") == [str(Settings.model_fields["http_port"].default)]
    assert _all("ENTRYPOINT") == ['["tokenbot"]']


def test_the_build_context_is_only_what_the_image_installs() -> None:
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {line[1:].rstrip("/") for line in rules if line.startswith("!")}
    copied = {rest.split()[0] for rest in _all("COPY")}
    assert copied <= allowed, copied - allowed
    assert ".venv" not in allowed and ".git" not in allowed
