"""The AllToken simulator's counters."""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

# Arrival times kept per route: enough for a bench's 1,000 polls many times over, bounded for a
# long-running demo.
_TIMES_KEPT = 50_000
PEAK_WINDOW_S = 2.0


@dataclass
class SimStats:
    """Counters tests read directly (in-process) or via GET /_sim/stats."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (method, template)
    errors: Counter[tuple[int, str]] = field(default_factory=Counter)  # (status, code)
    b64_deliveries: Counter[str] = field(default_factory=Counter)  # image task id -> b64 reads
    image_reads: Counter[str] = field(default_factory=Counter)  # image task id -> every GET
    r2_downloads: Counter[str] = field(default_factory=Counter)  # storage object id
    video_downloads: Counter[str] = field(default_factory=Counter)  # video task id
    image_submissions: int = 0
    video_submissions: int = 0
    video_cancellations: int = 0
    chat_completions: int = 0
    chat_streams: int = 0
    active_streams: int = 0
    max_active_streams: int = 0
    faults_triggered: int = 0
    # When each route's requests arrived (monotonic seconds), for the peak rate.
    arrivals: dict[tuple[str, str], deque[float]] = field(default_factory=dict)

    def count(self, method: str, template: str) -> None:
        """Count one request to a route, with its arrival time."""
        key = (method.upper(), template)
        self.requests[key] += 1
        times = self.arrivals.get(key)
        if times is None:
            times = self.arrivals[key] = deque(maxlen=_TIMES_KEPT)
        times.append(time.monotonic())

    def peak_rate(self, method: str, template: str, window: float = PEAK_WINDOW_S) -> float:
        """The most requests to one route that arrived within any `window` seconds, per second
        (timed here, as they arrived: no sampling from outside)."""
        times = list(self.arrivals.get((method.upper(), template)) or ())
        peak, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            peak = max(peak, end - start + 1)
        return peak / window

    def requests_to(self, method: str, template: str) -> int:
        """Requests seen for one route, e.g. ("GET", "/v1/images/generations/{id}")."""
        return self.requests[(method.upper(), template)]

    def reset(self) -> None:
        """Zero every counter (active_streams keeps counting live streams)."""
        active = self.active_streams
        fresh = SimStats()
        self.__dict__.update(fresh.__dict__)
        self.active_streams = active

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view: tuple keys become "METHOD /template" and "status code"."""
        return {
            "requests": {f"{m} {p}": n for (m, p), n in sorted(self.requests.items())},
            "errors": {f"{s} {c}": n for (s, c), n in sorted(self.errors.items())},
            "b64_deliveries": dict(self.b64_deliveries),
            "image_reads": dict(self.image_reads),
            "r2_downloads": dict(self.r2_downloads),
            "video_downloads": dict(self.video_downloads),
            "image_submissions": self.image_submissions,
            "video_submissions": self.video_submissions,
            "video_cancellations": self.video_cancellations,
            "chat_completions": self.chat_completions,
            "chat_streams": self.chat_streams,
            "active_streams": self.active_streams,
            "max_active_streams": self.max_active_streams,
            "faults_triggered": self.faults_triggered,
            "peak_rates": {f"{m} {p}": self.peak_rate(m, p) for (m, p) in sorted(self.arrivals)},
            "peak_window_s": PEAK_WINDOW_S,
        }
