"""The OpenMarlin simulator's fault model (its fields are the `/_sim/faults` wire format)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class OpenMarlinFault(BaseModel):
    """One injected fault: matching requests (method + path prefix) fail `times` times.

    `drop_stream` lets the request through and cuts an execution's event stream after three
    words; the other modes answer instead of the route.
    """

    method: str | None = None
    path: str
    status: int = Field(500, ge=100, le=599)
    error: str = "server_error"
    message: str | None = None
    times: int | None = Field(1, ge=1)  # None = forever
    latency_ms: float = Field(0.0, ge=0)
    retry_after: float | None = Field(None, ge=0)
    mode: Literal["error", "malformed_json", "malformed_sse", "drop_stream"] = "error"
    hits: int = 0
