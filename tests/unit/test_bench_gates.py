"""The pure logic of `make bench`'s gates: median, spread, and when a miss is a failure."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.__main__ import format_row
from bench.gates import Sample, gated_row, passes, percentile, ratios, reported_row

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


def test_sample_median_and_spread() -> None:
    s = Sample.of([3.0, 1.0, 2.0])
    assert (s.median, s.low, s.high, s.spread) == (2.0, 1.0, 3.0, 2.0)
    assert s.text(".1f") == "2.0 (1.0–3.0, n=3)"
    assert s.scaled(1000).values == (3000.0, 1000.0, 2000.0)


def test_an_empty_sample_is_refused() -> None:
    with pytest.raises(ValueError):
        Sample.of([])


def test_ratios_pair_each_repeat_with_its_own_baseline() -> None:
    assert ratios([2.0, 3.0, 4.0], [1.0, 3.0, 2.0]).values == (2.0, 1.0, 2.0)
    assert ratios([1.0], [0.0]).values == (math.inf,)
    with pytest.raises(ValueError):
        ratios([1.0, 2.0], [1.0])


def test_a_median_within_target_passes() -> None:
    assert passes(Sample.of([0.9, 1.0, 1.1]), ">=", 0.97)
    assert passes(Sample.of([250.0, 260.0, 270.0]), "<", 300.0)


def test_a_miss_within_the_spread_passes() -> None:
    # Median 310 misses < 300 by 10; the best repeat (250) is within target: noise.
    assert passes(Sample.of([250.0, 310.0, 320.0]), "<", 300.0)
    # Median 0.96 misses ≥ 0.97; the best repeat reaches 0.99.
    assert passes(Sample.of([0.95, 0.96, 0.99]), ">=", 0.97)


def test_a_miss_beyond_the_spread_fails() -> None:
    # Every repeat misses: a real regression, whatever the spread.
    assert not passes(Sample.of([321.0, 341.0, 621.0]), "<", 300.0)
    assert not passes(Sample.of([0.90, 0.92, 0.93]), ">=", 0.97)
    # One repeat alone has no spread: any miss fails.
    assert not passes(Sample.of([301.0]), "<", 300.0)
    # A strict bound: a best repeat exactly at the target still misses it.
    assert not passes(Sample.of([300.0, 310.0, 320.0]), "<", 300.0)


def test_equality_gates_allow_only_the_spread() -> None:
    assert passes(Sample.of([1.0, 1.0, 1.0]), "==", 1.0)
    assert not passes(Sample.of([0.999, 0.999, 0.999]), "==", 1.0)
    assert passes(Sample.of([0.99, 1.0, 1.0]), "==", 1.0)


def test_an_unmeasured_figure_fails() -> None:
    assert not passes(Sample.of([math.inf, math.inf, 1.0]), "<", 300.0)
    assert not passes(Sample.of([math.nan]), ">=", 0.0)


@given(st.lists(finite, min_size=1, max_size=9), finite)
def test_the_gate_is_never_more_lenient_than_max_minus_min(
    values: list[float], target: float
) -> None:
    s = Sample.of(values)
    for op in ("<=", ">="):
        if passes(s, op, target):
            miss = s.median - target if op == "<=" else target - s.median
            assert miss <= s.spread + 1e-9


@given(st.lists(finite, min_size=1, max_size=9), finite)
def test_every_repeat_missing_always_fails(values: list[float], target: float) -> None:
    s = Sample.of(values)
    if all(v > target for v in values):
        assert not passes(s, "<=", target)
    if all(v < target for v in values):
        assert not passes(s, ">=", target)


def test_gated_rows_carry_the_correctness_condition() -> None:
    good = Sample.of([0.99, 1.0, 1.01])
    row = gated_row("chat", "1.0", "direct", good, ">=", 0.97)
    assert row[5] and row[3] == 1.0 and "n=3" in row[4]
    assert not gated_row("chat", "1.0", "direct", good, ">=", 0.97, also=False)[5]
    assert format_row(row).endswith("| pass |")
    failing = gated_row("router", "1", "", Sample.of([0.5, 0.6, 0.7]), ">=", 1.0)
    assert format_row(failing).endswith("| FAIL |")
    reported = reported_row("rss", "100 MB", "80 MB idle")
    assert reported[5] and format_row(reported).endswith("| reported |  |")


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.5) == 50.0
    assert percentile([], 0.99) == math.inf
