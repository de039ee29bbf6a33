"""Run the simulators in their own process, so the bot under test doesn't share its CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sim_process(**env: str) -> Iterator[str]:
    """Start `tokenbot sim` with TOKENBOT_SIM_* overrides; yields the AllToken base URL."""
    full_env = {**os.environ, **env}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "sim"], stdout=subprocess.PIPE, text=True, env=full_env
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        yield str(ready["alltoken_base_url"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)
