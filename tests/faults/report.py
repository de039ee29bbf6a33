"""The fault suite's outcome tables, printed at the end of the run, under pytest-xdist too.

A case records what the user ended up with in `support.OUTCOMES` / `PLATFORM_OUTCOMES` of the
process that runs it. Each test's teardown report carries the entries recorded since the one
before (`attach`, in the faults' conftest), and the process that prints — the xdist controller,
or the only process — merges them back (`merge`, in the root conftest) before `write_tables`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.faults.support import FAULTS, OUTCOMES, PLATFORM_OUTCOMES, TARGETS

_PROPERTY = "tokenbot_fault_outcome"
_LEGEND = (
    "cells: ↻ok = retried, then answered · ok = answered · <code> = a Failure with that code "
    "reached the user · n/a = the fault cannot happen on that call · ? = case did not finish"
)
# What this process has already put on a report, so each entry travels once per change.
_sent: dict[tuple[str, str, str], str] = {}


def _tables() -> dict[str, dict[tuple[str, str], str]]:
    return {"backend": OUTCOMES, "platform": PLATFORM_OUTCOMES}


def attach(report: pytest.TestReport) -> None:
    """Put the outcomes recorded in this process and not sent yet on `report`."""
    for name, table in _tables().items():
        for (row, col), value in table.items():
            if _sent.get((name, row, col)) != value:
                _sent[(name, row, col)] = value
                report.user_properties.append((_PROPERTY, (name, row, col, value)))


def merge(report: pytest.TestReport) -> None:
    """Take in the outcomes another process attached to `report` (a no-op for our own)."""
    tables = _tables()
    for key, value in report.user_properties:
        if key == _PROPERTY:
            name, row, col, outcome = _entry(value)
            tables[name][(row, col)] = outcome


def _entry(value: Any) -> tuple[str, str, str, str]:
    name, row, col, outcome = value
    return str(name), str(row), str(col), str(outcome)


def _table(rows: list[str], cols: list[str], cell: dict[tuple[str, str], str]) -> list[str]:
    """A plain fixed-width table."""
    width0 = max(len(r) for r in rows)
    widths = [max(len(c), *(len(cell.get((r, c), "?")) for r in rows)) for c in cols]
    lines = [
        " | ".join([" " * width0, *(c.ljust(w) for c, w in zip(cols, widths, strict=True))]),
        "-+-".join(["-" * width0, *("-" * w for w in widths)]),
    ]
    for r in rows:
        values = (cell.get((r, c), "?").ljust(w) for c, w in zip(cols, widths, strict=True))
        lines.append(" | ".join([r.ljust(width0), *values]))
    return lines


def write_tables(tr: pytest.TerminalReporter) -> None:
    """The backend fault matrix and the platform fault results, if any case ran."""
    # The n/a cells are filled in at import: the matrix is printed only once a case ran.
    ran = any(v != "n/a" for v in OUTCOMES.values())
    if ran:
        tr.write_sep("=", "fault matrix: command × backend fault → what the user got")
        rows = [
            t.name
            for t in TARGETS
            if any(k[0] == t.name and v != "n/a" for k, v in OUTCOMES.items())
        ]
        cols = [f.name for f in FAULTS]
        for line in _table(rows, cols, OUTCOMES):
            tr.write_line(line)
        tr.write_line(_LEGEND)
    if PLATFORM_OUTCOMES:
        tr.write_sep("=", "platform faults → what happened")
        for (case, _), outcome in sorted(PLATFORM_OUTCOMES.items()):
            tr.write_line(f"{case:<44} {outcome}")
