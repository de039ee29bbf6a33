"""The fault suite's outcome tables: every case records what the user ended up with, and its
report carries that to the process that prints the tables at the end (tests/faults/report.py)."""

from __future__ import annotations

from collections.abc import Generator

import pluggy
import pytest

from tests.faults.report import attach


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    """A case's teardown report: with the outcomes it (and its module's import) recorded."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "teardown":
        attach(report)
