"""Injectable faults for the AllToken simulator: errors, garbage bodies, dropped streams.

The fault model is AllToken's own (its fields are the `/_sim/faults` wire format); matching and
consuming them is the shared `bot.sim.faults.FaultBook`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from bot.sim.alltoken.errors import DEFAULT_CODES

# What an injected 429 without its own `retry_after` asks for (AllToken: integer seconds).
DEFAULT_RETRY_AFTER_S = 1

FaultMode = Literal[
    "error", "malformed_json", "malformed_sse", "reset_mid_stream", "top_level_request_id"
]


class Fault(BaseModel):
    """One injected fault: which requests it hits (method + path prefix), how, and how often.

    In mode "error", a fault with latency_ms but no status only delays the request and then
    lets it through; otherwise status defaults to 500.
    """

    method: str | None = None
    path: str
    status: int | None = Field(None, ge=100, le=599)
    code: str | None = None
    message: str | None = None
    retry_after: float | None = Field(None, ge=0)
    latency_ms: float | None = Field(None, ge=0)
    times: int | None = Field(1, ge=1)  # None = every matching request, forever
    mode: FaultMode = "error"
    id: int = 0
    hits: int = 0

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str | None) -> str | None:
        return value.upper() if value else None

    @property
    def delay_only(self) -> bool:
        """True for a pure latency fault that lets the request through afterwards."""
        return self.mode == "error" and self.status is None and self.latency_ms is not None

    def effective_status(self) -> int:
        """The status an error-mode fault answers with."""
        return self.status if self.status is not None else 500

    def effective_code(self) -> str:
        """The error code, defaulting from the status."""
        status = self.effective_status()
        return self.code or DEFAULT_CODES.get(status, f"http_{status}")

    def retry_after_header(self) -> str | None:
        """Retry-After as AllToken sends it: integer seconds; fractions kept so tests stay fast.

        AllToken's 429s always carry one, so a 429 fault without `retry_after` sends the
        default; other statuses send it only when asked.
        """
        if self.retry_after is None:
            return str(DEFAULT_RETRY_AFTER_S) if self.effective_status() == 429 else None
        if float(self.retry_after).is_integer():
            return str(int(self.retry_after))
        return f"{self.retry_after:g}"
