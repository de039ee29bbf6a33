"""Injectable faults for the AllToken simulator: errors, garbage bodies, dropped streams."""

from __future__ import annotations

import itertools
from typing import Literal

from pydantic import BaseModel, Field, field_validator

FaultMode = Literal[
    "error", "malformed_json", "malformed_sse", "reset_mid_stream", "top_level_request_id"
]

# AllToken's codes for statuses a fault may name without a code of its own.
DEFAULT_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_balance",
    403: "forbidden",
    404: "not_found",
    409: "duplicate_request",
    410: "image_expired",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "all_providers_failed",
    504: "gateway_timeout",
}


def error_type_for(status: int) -> str:
    """The envelope `type` AllToken uses for an HTTP status."""
    if status in (401, 403):
        return "auth_error"
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


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

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request (and still has uses left)."""
        if self.times is not None and self.hits >= self.times:
            return False
        return (self.method is None or self.method == method) and path.startswith(self.path)

    def effective_status(self) -> int:
        """The status an error-mode fault answers with."""
        return self.status if self.status is not None else 500

    def effective_code(self) -> str:
        """The error code, defaulting from the status."""
        status = self.effective_status()
        return self.code or DEFAULT_CODES.get(status, f"http_{status}")

    def retry_after_header(self) -> str | None:
        """Retry-After as AllToken sends it: integer seconds; fractions kept so tests stay fast."""
        if self.retry_after is None:
            return None
        if float(self.retry_after).is_integer():
            return str(int(self.retry_after))
        return f"{self.retry_after:g}"


class FaultBook:
    """The active faults, consumed in insertion order."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, fault: Fault) -> Fault:
        """Register a fault (a copy, with a fresh id and hit count) and return it."""
        stored = fault.model_copy(update={"id": next(self._ids), "hits": 0})
        self._faults.append(stored)
        return stored

    def clear(self) -> int:
        """Remove every fault; returns how many there were."""
        count = len(self._faults)
        self._faults.clear()
        return count

    def take(self, method: str, path: str) -> Fault | None:
        """The first fault matching this request, with one use consumed."""
        for fault in self._faults:
            if fault.matches(method, path):
                fault.hits += 1
                if fault.times is not None and fault.hits >= fault.times:
                    self._faults.remove(fault)
                return fault
        return None

    def active(self) -> list[Fault]:
        """The faults still active."""
        return list(self._faults)
