"""The fault tables travel from the process that ran a case to the one that prints them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults import report as fault_report
from tests.faults.support import OUTCOMES, PLATFORM_OUTCOMES

ROW, COL = "unit-test row", "unit-test fault"


def _report() -> pytest.TestReport:
    return pytest.TestReport("t::x", ("t", 0, "x"), {}, "passed", None, "teardown", [])


@pytest.fixture
def cleaned() -> Iterator[None]:
    yield
    OUTCOMES.pop((ROW, COL), None)
    PLATFORM_OUTCOMES.pop((ROW, ""), None)


@pytest.mark.usefixtures("cleaned")
def test_outcomes_attached_by_a_worker_are_merged_where_the_table_is_printed() -> None:
    OUTCOMES[(ROW, COL)] = "↻ok"
    PLATFORM_OUTCOMES[(ROW, "")] = "reply arrived"
    sent = _report()
    fault_report.attach(sent)
    # Another process: its tables start without these entries.
    del OUTCOMES[(ROW, COL)], PLATFORM_OUTCOMES[(ROW, "")]
    fault_report.merge(sent)
    assert OUTCOMES[(ROW, COL)] == "↻ok"
    assert PLATFORM_OUTCOMES[(ROW, "")] == "reply arrived"
    # Each entry travels once per change: the next report carries only what changed.
    OUTCOMES[(ROW, COL)] = "timeout"
    again = _report()
    fault_report.attach(again)
    assert [value for _, value in again.user_properties] == [("backend", ROW, COL, "timeout")]
