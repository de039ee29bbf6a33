"""Reading py-spy's collapsed stacks back as top functions (bench/profile.py)."""

from __future__ import annotations

from bench.profile import read_collapsed

RAW = """\
run (asyncio/base_events.py:600);_run_once (asyncio/base_events.py:1900);parse (bot/core/grammar.py:40) 30
run (asyncio/base_events.py:600);_run_once (asyncio/base_events.py:1910);select (selectors.py:468) 60
run (asyncio/base_events.py:600);walk (bot/x.py:3);walk (bot/x.py:9) 10
not a stack line
"""


def test_own_and_total_time_per_function() -> None:
    p = read_collapsed(RAW)
    assert p.samples == 100
    # Line numbers are dropped: one function's samples add up.
    assert p.own["select (selectors.py)"] == 60
    assert p.own["parse (bot/core/grammar.py)"] == 30
    assert p.total["_run_once (asyncio/base_events.py)"] == 90
    # A recursive function counts once per stack.
    assert p.total["walk (bot/x.py)"] == 10
    assert p.total["run (asyncio/base_events.py)"] == 100
    text = p.top(2)
    assert "60.0%  select (selectors.py)" in text
    assert "100.0%  run (asyncio/base_events.py)" in text


def test_no_samples() -> None:
    assert read_collapsed("").top() == "no samples"
