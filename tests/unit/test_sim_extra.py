"""The simulators' dependencies (the `[sim]` extra: the AllToken SDK and Pillow) stay out of a
production install: every non-simulator module imports without them, and starting a simulator
without them says what to install in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.sim.dependencies import SIM_DEPENDENCIES, missing_sim_dependencies

ROOT = Path(__file__).resolve().parents[2]
# `None` in sys.modules makes `import alltoken` (and its submodules) raise ImportError, as on
# an install without the extra.
BLOCK_SIM_EXTRA = "import sys\nfor name in ('alltoken', 'PIL'):\n    sys.modules[name] = None\n"
# Simulator modules the CLI imports before a simulator starts: they must import without it.
SIM_ENTRY_MODULES = ("bot.sim.cluster", "bot.sim.dependencies")


def _production_modules() -> list[str]:
    """Every module under bot/ and adapters/ except the simulators (and `python -m` entries)."""
    names: list[str] = []
    for package in ("bot", "adapters"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__main__" or parts[:2] == ("bot", "sim"):
                continue
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _run_without_sim_extra(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENBOT_")}
    env.update(PYTHONPATH=str(ROOT), TOKENBOT_DATA_DIR=str(tmp_path / "data"))
    return subprocess.run(
        [sys.executable, "-c", BLOCK_SIM_EXTRA + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
    )


def test_the_blocking_really_hides_the_sim_extra(tmp_path: Path) -> None:
    # Guards the test below: were the block ineffective, it would prove nothing.
    proc = _run_without_sim_extra(
        "from bot.sim.dependencies import missing_sim_dependencies\n"
        "print(','.join(missing_sim_dependencies()))\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ",".join(SIM_DEPENDENCIES.values())
    assert missing_sim_dependencies() == []  # this venv has the extra: nothing is refused


def test_every_production_module_imports_without_the_sim_extra(tmp_path: Path) -> None:
    modules = [*_production_modules(), *SIM_ENTRY_MODULES]
    assert {"bot.cli", "bot.core.app", "adapters.slack.runner", "adapters.discord.runner"} <= set(
        modules
    )
    assert "adapters.console.run" in modules
    proc = _run_without_sim_extra(
        "import importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('alltoken', 'PIL')"
        " and sys.modules[m] is not None)\n"
        "assert not loaded, loaded\n"
        "print('ok', len(sys.modules))\n",
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok ")


@pytest.mark.parametrize("argv", [["sim"], ["console", "--sim"]])
def test_starting_a_simulator_without_the_extra_says_what_to_install(
    argv: list[str], tmp_path: Path
) -> None:
    proc = _run_without_sim_extra(
        f"from bot.cli import main\nsys.exit(main({argv!r}))\n",
        tmp_path,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tokenbot: the simulators need the [sim] extra (alltoken, Pillow")
    assert "pip install 'tokenbot[sim]'" in lines[0]
    assert proc.stdout == ""


def test_the_peak_rate_counts_arrivals_in_any_window() -> None:
    from collections import deque

    from bot.sim.alltoken.stats import SimStats

    stats = SimStats()
    route = ("GET", "/v1/videos/generations/{id}")
    # 3 a second for 4 s, then 10 within half a second: the busiest 2 s (2.45-4.45) hold the
    # 10 and the 4 at 2.67, 3.0, 3.33 and 3.67.
    times = [i / 3 for i in range(12)] + [4.0 + i / 20 for i in range(10)]
    stats.arrivals[route] = deque(times)
    assert stats.peak_rate(*route) == (10 + 4) / 2
    assert stats.peak_rate(*route, window=0.5) == 10 / 0.5
    assert stats.peak_rate("GET", "/v1/models") == 0.0
    stats.count(*route)
    assert stats.requests[route] == 1 and len(stats.arrivals[route]) == 23
