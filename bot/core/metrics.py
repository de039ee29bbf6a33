"""Prometheus metrics: commands by name and outcome, backend latency, pending jobs, stream edits.

One registry per TokenBot (not the global default) so tests and several bots in one process
don't share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

import httpx
from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["PROMETHEUS_CONTENT_TYPE", "Metrics"]


class _StoreHealth(Protocol):
    @property
    def queued_rows(self) -> int: ...
    @property
    def dropped_rows(self) -> int: ...


class Metrics:
    """The bot's instruments."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter(
            "tokenbot_commands",
            "Commands handled, by command and outcome.",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.backend_latency = Histogram(
            "tokenbot_backend_request_seconds",
            "Backend HTTP latency to response headers, by backend host and status class.",
            ["backend", "status"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.jobs_pending = Gauge(
            "tokenbot_jobs_pending", "Jobs running in this process.", registry=self.registry
        )
        self.stream_edits = Counter(
            "tokenbot_stream_edits",
            "Messages posted or edited while streaming, by platform.",
            ["platform"],
            registry=self.registry,
        )
        self.store_queued_rows = Gauge(
            "tokenbot_store_queued_rows",
            "Usage/audit/last-call rows waiting in memory because the store cannot write them.",
            registry=self.registry,
        )
        self.store_dropped_rows = Gauge(
            "tokenbot_store_dropped_rows",
            "Usage/audit/last-call rows lost since start (the store failed and the queue was full).",
            registry=self.registry,
        )
        self._hosts: dict[str, str] = {}

    def name_backend(self, base_url: str, backend: str) -> None:
        """Label requests to `base_url`'s host as `backend`."""
        host = urlsplit(base_url).netloc
        if host:
            self._hosts[host] = backend

    def track_jobs(self, active: Callable[[], int]) -> None:
        """Read the pending-jobs gauge from the runner when scraped."""
        self.jobs_pending.set_function(lambda: float(active()))

    def track_store(self, health: Callable[[], _StoreHealth]) -> None:
        """Read the store's queued and dropped row counts when scraped."""
        self.store_queued_rows.set_function(lambda: float(health().queued_rows))
        self.store_dropped_rows.set_function(lambda: float(health().dropped_rows))

    def http_hooks(self) -> dict[str, list[Callable[..., object]]]:
        """httpx event hooks timing every request from send to response headers."""

        async def on_request(request: httpx.Request) -> None:
            request.extensions["tokenbot_started"] = time.perf_counter()

        async def on_response(response: httpx.Response) -> None:
            started = response.request.extensions.get("tokenbot_started")
            if started is None:
                return
            host = response.request.url.netloc.decode()
            backend = self._hosts.get(host, "other")
            status = f"{response.status_code // 100}xx"
            self.backend_latency.labels(backend, status).observe(time.perf_counter() - started)

        return {"request": [on_request], "response": [on_response]}

    def exposition(self) -> bytes:
        """The text format served at /metrics."""
        return generate_latest(self.registry)
