"""The pure logic of `make bench`: repeats summarised as median and spread, and gates on them.

A gate compares the median of a figure's repeats with its target and fails only when the
median is outside the target by more than the spread the repeats showed on the target's side:
a noisy repeat widens the spread instead of failing the bench, while a miss that every repeat
shows (a real regression) still fails.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

# (name, measured, baseline, ratio, target, ok): what every bench module's rows() returns.
Row = tuple[str, str, str, float, str, bool]
Op = Literal["<", "<=", ">", ">=", "=="]

# Repeats of every gated figure (≥ 3 for a spread to mean anything).
REPEATS = max(1, int(os.environ.get("BENCH_REPEATS", "3")))


@dataclass(frozen=True)
class Sample:
    """The repeats of one figure: median, min and max."""

    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Sample:
        """A sample of at least one value (NaN values are kept: they make the gate fail)."""
        if not values:
            raise ValueError("a sample needs at least one value")
        return cls(tuple(float(v) for v in values))

    @property
    def median(self) -> float:
        """The middle of the repeats."""
        return float(statistics.median(self.values))

    @property
    def low(self) -> float:
        """The smallest repeat."""
        return min(self.values)

    @property
    def high(self) -> float:
        """The largest repeat."""
        return max(self.values)

    @property
    def spread(self) -> float:
        """max − min of the repeats (0 for one repeat)."""
        return self.high - self.low

    def scaled(self, factor: float) -> Sample:
        """Every repeat multiplied by `factor` (seconds to milliseconds, say)."""
        return Sample(tuple(v * factor for v in self.values))

    def text(self, fmt: str = ".3f", unit: str = "") -> str:
        """`median (min–max, n=3)`."""
        return (
            f"{self.median:{fmt}}{unit} ({self.low:{fmt}}–{self.high:{fmt}}{unit}, "
            f"n={len(self.values)})"
        )


def ratios(measured: Sequence[float], baseline: Sequence[float]) -> Sample:
    """Each repeat's measured ÷ its own baseline (pairs from the same repeat)."""
    if len(measured) != len(baseline):
        raise ValueError("measured and baseline need one value per repeat each")
    return Sample.of([m / b if b else math.inf for m, b in zip(measured, baseline, strict=True)])


def _holds(value: float, op: Op, target: float) -> bool:
    if op == "<":
        return value < target
    if op == "<=":
        return value <= target
    if op == ">":
        return value > target
    if op == ">=":
        return value >= target
    return value == target


def passes(sample: Sample, op: Op, target: float) -> bool:
    """Whether the median meets `op target`, or misses it by no more than the spread.

    The spread counted is the one on the target's side of the median (median − min for an
    upper bound, max − median for a lower bound, max − min for `==`): never more lenient than
    max − min, and a miss every repeat shows (the best repeat misses too) always fails.
    NaN or infinite medians never pass (a figure that could not be measured is a failure).
    """
    median = sample.median
    if not math.isfinite(median):
        return False
    if _holds(median, op, target):
        return True
    if op == "==":
        return abs(median - target) <= sample.spread
    if op in ("<", "<="):
        return _holds(sample.low, op, target)
    return _holds(sample.high, op, target)


def gated_row(
    name: str,
    measured: str,
    baseline: str,
    sample: Sample,
    op: Op,
    target: float,
    *,
    also: bool = True,
) -> Row:
    """A table row whose result is `passes(sample, op, target) and also`.

    `also` carries a correctness condition that has no spread (every reply delivered).
    """
    symbol = {"<=": "≤", ">=": "≥", "==": "="}.get(op, op)
    target_text = f"{symbol} {target:g}; {sample.text()}"
    return (
        name,
        measured,
        baseline,
        sample.median,
        target_text,
        passes(sample, op, target) and also,
    )


def reported_row(name: str, measured: str, baseline: str, ratio: float = math.nan) -> Row:
    """A row that is reported, not gated."""
    return (name, measured, baseline, ratio, "reported", True)


def machine_line() -> str:
    """What this run ran on: CPU, cores, Python, OS."""
    cpu = platform.processor() or platform.machine()
    model = _cpu_model()
    return (
        f"machine: {model or cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}"
    )


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def load_text(load: tuple[float, float, float]) -> str:
    """os.getloadavg() as `1.23 / 1.10 / 0.98 (1/5/15 min)`."""
    return f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)"


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-quantile (q = 0.99: p99); inf when there are no values."""
    if not values:
        return math.inf
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]
