"""One `tokenbot run` subprocess of a cluster, and where it writes its log."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Replica:
    """One `tokenbot run` subprocess."""

    name: str
    shard_ids: tuple[int, ...]
    data_dir: Path
    log_path: Path
    process: asyncio.subprocess.Process
    port: int | None = None
    # SIGKILLed or SIGTERMed by the cluster (an exit nobody asked for is a failure).
    stopped: bool = False

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.process.returncode is None

    @property
    def url(self) -> str:
        """Its HTTP server (/healthz, /readyz, /metrics, /slack/events)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        """Where the load balancer sends Slack's requests."""
        return f"{self.url}/slack/events"

    def log(self) -> str:
        """Everything it wrote so far (stdout and stderr)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def tail(self, lines: int = 40) -> str:
        """The last lines of its log."""
        return "\n".join(self.log().splitlines()[-lines:])
