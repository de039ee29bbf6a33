"""The OpenClaw Token simulator's fault model: one method + exact path, `times` answers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OpenClawFault:
    """An injected failure: the next `times` requests to method + path answer with it."""

    method: str
    path: str
    status: int
    code: str
    times: int
    retry_after: float | None = None
    latency_ms: float = 0.0
    # error | malformed_json | malformed_sse | reset_mid_stream
    mode: str = "error"
    hits: int = 0
