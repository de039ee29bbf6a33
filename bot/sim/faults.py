"""Injected faults, the same way in every simulator: a book of rules, taken per request.

Each simulator keeps its own fault model (its fields are part of its `/_sim/faults` wire
format) and its own broken answers (each imitates how its service breaks); what they share
is here: matching a request to the first rule with uses left, counting hits, the latency
before the answer, and the building blocks of a broken answer.
"""

from __future__ import annotations

import asyncio
from typing import Generic, Literal, Protocol, TypeVar

from aiohttp import web

__all__ = [
    "FaultBook",
    "FaultRule",
    "cut_connection",
    "malformed_json",
    "retry_after_text",
    "take_fault",
    "uses_left",
]


class FaultRule(Protocol):
    """What the book needs of a fault: which requests it hits and how often."""

    hits: int

    @property
    def method(self) -> str | None:
        """The HTTP method it hits (None: any)."""

    @property
    def path(self) -> str:
        """The path (prefix or exact, per the book) it hits."""

    @property
    def times(self) -> int | None:
        """How many requests it hits (None: every one, forever)."""

    @property
    def latency_ms(self) -> float | None:
        """Milliseconds to wait before answering."""


F = TypeVar("F", bound=FaultRule)


def uses_left(fault: FaultRule) -> bool:
    """Whether a fault still hits requests."""
    return fault.times is None or fault.hits < fault.times


class FaultBook(Generic[F]):
    """One simulator's active faults, matched in insertion order.

    `match="prefix"` hits every path starting with the rule's path, `"exact"` only that path.
    `prune_spent` drops a fault once its uses are spent (else it stays listed and counted).
    """

    def __init__(
        self, *, match: Literal["prefix", "exact"] = "prefix", prune_spent: bool = True
    ) -> None:
        self._faults: list[F] = []
        self._exact = match == "exact"
        self._prune_spent = prune_spent

    def append(self, fault: F) -> F:
        """Arm `fault` itself (its `hits` count up as requests meet it); returns it."""
        self._faults.append(fault)
        return fault

    def clear(self) -> int:
        """Remove every fault; returns how many were stored."""
        count = len(self._faults)
        self._faults.clear()
        return count

    def active(self) -> list[F]:
        """The faults with uses left."""
        return [f for f in self._faults if uses_left(f)]

    def __len__(self) -> int:
        return len(self._faults)

    def _hits(self, fault: F, method: str, path: str) -> bool:
        if fault.method is not None and fault.method.upper() != method:
            return False
        return path == fault.path if self._exact else path.startswith(fault.path)

    def take(self, method: str, path: str) -> F | None:
        """The first fault for this request, with one use consumed."""
        for fault in self._faults:
            if uses_left(fault) and self._hits(fault, method, path):
                fault.hits += 1
                if self._prune_spent and not uses_left(fault):
                    self._faults.remove(fault)
                return fault
        return None


async def take_fault(book: FaultBook[F], request: web.Request, latency_ms: float = 0.0) -> F | None:
    """This request's fault (never one for the `/_sim/` control API), after the latency.

    The wait is the simulator's own `latency_ms` plus the fault's.
    """
    if request.path.startswith("/_sim/"):
        return None
    fault = book.take(request.method, request.path)
    if fault is not None and fault.latency_ms:
        latency_ms += fault.latency_ms
    if latency_ms > 0:
        await asyncio.sleep(latency_ms / 1000)
    return fault


def retry_after_text(seconds: float) -> str:
    """A Retry-After value: whole seconds print as integers, fractions kept (tests stay fast)."""
    return f"{seconds:g}"


def malformed_json(body: bytes, status: int = 200) -> web.Response:
    """A response that claims JSON but is not."""
    return web.Response(status=status, body=body, content_type="application/json")


def cut_connection(request: web.Request) -> None:
    """Close the socket mid-answer: to the client, an incomplete body, like a dropped upstream.

    aiohttp's later write_eof fails with a ConnectionError, which it treats as a client reset.
    """
    if request.transport is not None:
        request.transport.close()
