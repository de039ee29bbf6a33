"""The fault suite's outcome table: every case records what the user ended up with, and the
table (targets × faults) is printed at the end of the run."""

from __future__ import annotations

import pytest

from tests.faults.support import FAULTS, OUTCOMES, PLATFORM_OUTCOMES, TARGETS

_LEGEND = (
    "cells: ↻ok = retried, then answered · ok = answered · <code> = a Failure with that code "
    "reached the user · n/a = the fault cannot happen on that call · ? = case did not finish"
)


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the backend fault matrix and the platform fault results, if any case ran."""
    # The n/a cells are filled in at import: the matrix is printed only once a case ran.
    ran = any(v != "n/a" for v in OUTCOMES.values())
    if not ran and not PLATFORM_OUTCOMES:
        return
    tr = terminalreporter
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
