"""The image's entrypoint as the container runs it: an unprivileged user, the code read-only,
a fresh data volume as the working directory, the example env file's settings.

No image registry is reachable here, so this runs the same entrypoint (`python -m bot`, what
the `tokenbot` script calls) with the same constraints the Dockerfile sets up, instead of
building the image.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOBODY = 65534


def _read_only_copy(dest: Path) -> Path:
    for package in ("bot", "adapters"):
        shutil.copytree(
            ROOT / package, dest / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    for path in sorted(dest.rglob("*"), reverse=True):
        path.chmod(0o555 if path.is_dir() else 0o444)
    dest.chmod(0o555)
    return dest


def _interpreter_for(uid: int) -> str | None:
    """A Python of this version that `uid` may run with this checkout's packages, if any
    (a pyenv build under /root is not runnable by others)."""
    candidates = [
        sys.executable,
        f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}",
    ]
    for candidate in candidates:
        try:
            probe = subprocess.run(
                [
                    candidate,
                    "-c",
                    "import sys, aiohttp, pydantic_core; print(sys.version_info[:2])",
                ],
                capture_output=True,
                text=True,
                user=uid if os.geteuid() == 0 else None,
                env={"PYTHONPATH": _site_packages()},
                cwd="/",
                check=False,
            )
        except OSError:
            continue  # not there, or not executable by that user
        if probe.returncode == 0 and probe.stdout.strip() == str(sys.version_info[:2]):
            return candidate
    return None


def _site_packages() -> str:
    return next(p for p in site.getsitepackages() if p.endswith("site-packages"))


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A temp dir another user can enter (pytest's own tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="tokenbot-container-"))
    path.chmod(0o755)
    yield path
    for sub in path.rglob("*"):
        if sub.is_dir() and not sub.is_symlink():
            sub.chmod(0o755)
    shutil.rmtree(path, ignore_errors=True)


def test_console_runs_as_an_unprivileged_user_with_read_only_code(world_dir: Path) -> None:
    tmp_path = world_dir
    code = _read_only_copy(tmp_path / "app")
    data = tmp_path / "data"  # the fresh volume, WORKDIR /data
    data.mkdir()
    as_root = os.geteuid() == 0
    uid = NOBODY if as_root else os.geteuid()
    python = _interpreter_for(uid)
    if python is None:
        # E.g. the checkout's packages sit under a directory only root may enter: the test still
        # runs (read-only code copy, fresh data dir, example env), as this user, and says so.
        warnings.warn(
            f"uid {uid} cannot run Python with this checkout's packages; running as uid "
            f"{os.geteuid()}",
            stacklevel=1,
        )
        as_root, uid, python = False, os.geteuid(), sys.executable
    if as_root:
        os.chown(data, NOBODY, NOBODY)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data),
        "PYTHONPATH": f"{code}{os.pathsep}{_site_packages()}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        # What `cp config/tokenbot.example.env tokenbot.env && docker run --env-file …` sets.
        "TOKENBOT_DATA_DIR": "./tokenbot-data",
        "TOKENBOT_SIM_IMAGE_SECONDS": "0.2",
        "TOKENBOT_SIM_TOKENS_PER_SECOND": "400",
    }
    result = subprocess.run(
        [python, "-m", "bot", "console", "--sim"],
        input="/alltoken-chat hello\n/alltoken-image a lighthouse at dusk\n",
        capture_output=True,
        text=True,
        cwd=data,
        env=env,
        user=uid if as_root else None,
        group=NOBODY if as_root else None,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output and "PermissionError" not in output, output
    assert "Simulated answer" in result.stdout
    assert list((data / "tokenbot-out").glob("*.png")), output
    assert (data / "tokenbot-data" / "tokenbot.db").is_file()
    # The code dir stayed as it was: nothing was written into it.
    assert not [p for p in code.rglob("*") if p.suffix == ".pyc" or p.name == "__pycache__"]
