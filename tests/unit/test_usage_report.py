"""Spend reports: windows, aggregation along each dimension, estimate marking, CSV safety."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.store.models import CostSource, LedgerEntry, Owner
from bot.teams.report import (
    CSV_COLUMNS,
    MAX_WINDOW_DAYS,
    NO_MODEL,
    ReportWindowError,
    build_report,
    csv_safe,
    ledger_csv,
    usd,
    window_for,
)

NOW = datetime(2026, 12, 2, 15, 30, tzinfo=UTC)


def entry(
    cost: str,
    *,
    at: datetime = NOW,
    user: str = "U1",
    service: str = "alltoken",
    model: str | None = "gpt-5.4-mini",
    source: CostSource = "reported",
    prompt: int = 10,
    completion: int = 5,
    command: str = "chat",
    request_id: str | None = "req_1",
) -> LedgerEntry:
    return LedgerEntry(
        owner=Owner(platform="slack", workspace="T1", user=user),
        channel="C1",
        service=service,
        command=command,
        model=model,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=Decimal(cost),
        cost_source=source,
        request_id=request_id,
        created_at=at,
    )


# --- windows -------------------------------------------------------------------------------


def test_seven_days_is_today_and_the_six_before_from_utc_midnight() -> None:
    window = window_for(None, 7, NOW)
    assert window.since == datetime(2026, 11, 26, tzinfo=UTC)
    assert window.until == NOW
    assert window.label == "last 7 days"
    assert window.days() == [date(2026, 11, 26) + timedelta(days=n) for n in range(7)]


def test_a_date_starts_at_its_utc_midnight_and_one_day_reads_today() -> None:
    assert window_for(date(2026, 11, 1), None, NOW).since == datetime(2026, 11, 1, tzinfo=UTC)
    assert window_for(date(2026, 11, 1), None, NOW).label == "since 2026-11-01"
    assert window_for(None, 1, NOW).label == "today"
    assert window_for(None, None, NOW).label == "last 7 days"  # the default


def test_a_local_time_now_is_read_in_utc() -> None:
    tokyo = NOW.astimezone(ZoneInfo("Asia/Tokyo"))  # already Dec 3 there
    assert window_for(None, 1, tokyo).since == datetime(2026, 12, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "days", "needle"),
    [
        (date(2026, 12, 3), None, "in the future"),
        (None, 0, "at least one day"),
        (None, MAX_WINDOW_DAYS + 1, "at most"),
        (date(2025, 1, 1), None, "at most"),
    ],
)
def test_windows_a_report_cannot_cover_are_refused(
    since: date | None, days: int | None, needle: str
) -> None:
    with pytest.raises(ReportWindowError, match=needle):
        window_for(since, days, NOW)


def test_a_full_year_is_allowed() -> None:
    assert len(window_for(None, MAX_WINDOW_DAYS, NOW).days()) == MAX_WINDOW_DAYS


# --- aggregation ---------------------------------------------------------------------------

LEDGER = [
    entry("0.10", at=NOW - timedelta(days=1), user="U1", service="alltoken", model="m-a"),
    entry("0.20", at=NOW - timedelta(days=1), user="U2", service="openmarlin", model="m-b"),
    entry("0.05", at=NOW, user="U1", service="alltoken", model="m-b", source="estimate"),
    entry("1.00", at=NOW, user="U2", service="openclaw_token", model=None, source="charge"),
    # Outside the window (7 days ago at 23:59 is the day before it starts).
    entry("9.99", at=datetime(2026, 11, 25, 23, 59, tzinfo=UTC), user="U1"),
]


def test_by_day_rows_are_chronological_and_stacked_by_backend() -> None:
    report = build_report(LEDGER, "day", window_for(None, 7, NOW))
    assert [(r.key, r.totals.cost_usd) for r in report.rows] == [
        ("2026-12-01", Decimal("0.30")),
        ("2026-12-02", Decimal("1.05")),
    ]
    assert report.stack_dimension == "backend"
    assert list(report.stacks) == ["openclaw_token", "openmarlin", "alltoken"]  # by total
    assert len(report.days) == 7 and report.days[-1] == date(2026, 12, 2)
    assert report.stacks["alltoken"][-2:] == [Decimal("0.10"), Decimal("0.05")]
    assert sum(report.stacks["alltoken"][:-2]) == 0  # days without spend are zeros


def test_by_model_user_and_backend_sort_by_cost_and_sum_to_the_total() -> None:
    window = window_for(None, 7, NOW)
    by_model = build_report(LEDGER, "model", window)
    assert [r.key for r in by_model.rows] == [NO_MODEL, "m-b", "m-a"]
    assert by_model.stack_dimension == "model"
    by_user = build_report(LEDGER, "user", window)
    assert [(r.key, r.totals.calls) for r in by_user.rows] == [("U2", 2), ("U1", 2)]
    by_backend = build_report(LEDGER, "backend", window)
    assert [r.key for r in by_backend.rows] == ["openclaw_token", "openmarlin", "alltoken"]
    for report in (by_model, by_user, by_backend):
        assert sum((r.totals.cost_usd for r in report.rows), Decimal(0)) == Decimal("1.35")
        assert report.total.cost_usd == Decimal("1.35") and report.total.calls == 4
        assert report.total.prompt_tokens == 40 and report.total.completion_tokens == 20


def test_estimated_costs_are_counted_apart_and_marked() -> None:
    report = build_report(LEDGER, "user", window_for(None, 7, NOW))
    u1, u2 = (
        {r.key: r.totals for r in report.rows}["U1"],
        {r.key: r.totals for r in report.rows}["U2"],
    )
    assert u1.has_estimate and u1.estimated_usd == Decimal("0.05") and u1.estimated_calls == 1
    assert not u2.has_estimate and u2.estimated_usd == 0
    assert report.total.estimated_usd == Decimal("0.05")


def test_an_empty_ledger_gives_an_empty_report_with_its_days() -> None:
    report = build_report([], "day", window_for(None, 30, NOW))
    assert report.rows == [] and report.total.calls == 0 and report.stacks == {}
    assert len(report.days) == 30


def test_a_zero_cost_call_counts_as_a_call() -> None:
    report = build_report([entry("0")], "backend", window_for(None, 1, NOW))
    assert report.total.calls == 1 and report.total.cost_usd == 0


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),  # days ago
            st.integers(0, 10_000),  # cost in 1/10000 USD
            st.sampled_from(["U1", "U2", "U3"]),
            st.sampled_from(["alltoken", "openmarlin", "openclaw_token"]),
            st.sampled_from(["reported", "estimate", "settlement", "charge"]),
        ),
        max_size=40,
    ),
    st.sampled_from(["day", "model", "user", "backend"]),
)
def test_every_dimension_and_the_stacks_add_up_to_the_window_total(
    rows: list[tuple[int, int, str, str, CostSource]], dimension: str
) -> None:
    ledger = [
        entry(str(Decimal(c) / 10_000), at=NOW - timedelta(days=d), user=u, service=s, source=src)
        for d, c, u, s, src in rows
    ]
    window = window_for(None, 30, NOW)
    report = build_report(ledger, dimension, window)  # type: ignore[arg-type]
    inside = [e for e in ledger if e.created_at >= window.since]
    expected = sum((e.cost_usd for e in inside), Decimal(0))
    assert report.total.cost_usd == expected and report.total.calls == len(inside)
    assert sum((r.totals.cost_usd for r in report.rows), Decimal(0)) == expected
    stacked = sum((sum(v, Decimal(0)) for v in report.stacks.values()), Decimal(0))
    assert stacked == expected
    estimated = sum((e.cost_usd for e in inside if e.cost_source == "estimate"), Decimal(0))
    assert report.total.estimated_usd == estimated


def test_dollars_read_as_cents_from_one_dollar_up() -> None:
    assert usd(Decimal("12.3456")) == "$12.35"
    assert usd(Decimal("1234.5")) == "$1,234.50"
    assert usd(Decimal("0.0123")) == "$0.0123"
    assert usd(Decimal("0")) == "$0.00"
    assert usd(Decimal("0.5")) == "$0.50"
    assert usd(Decimal("0.0001")) == "$0.0001"
    assert usd(Decimal("0.00001")) == "<$0.0001"


# --- CSV -----------------------------------------------------------------------------------

HOSTILE = [
    '=HYPERLINK("http://evil.test","x")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\t=1",
    "\r=1",
    'gpt "quoted", with commas',
    "line\nbreak",
    "plain-model",
]


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("name", HOSTILE)
def test_model_and_user_names_are_csv_safe(name: str) -> None:
    text = ledger_csv(
        [entry("0.5", model=name, user=name, request_id=name)], window_for(None, 1, NOW)
    )
    header, row, *rest = parse(text)
    assert rest == [] and tuple(header) == CSV_COLUMNS
    cells = dict(zip(header, row, strict=True))
    for column in ("model", "user", "request_id"):
        value = cells[column]
        assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), value
        assert value.removeprefix("'") == name  # nothing else changed: round-trips
    assert cells["cost_usd"] == "0.5"


def test_csv_has_every_column_oldest_first_and_marks_estimates() -> None:
    text = ledger_csv(LEDGER, window_for(None, 7, NOW))
    assert text.endswith("\r\n")
    header, *rows = parse(text)
    assert len(rows) == 4  # the entry before the window is left out
    cells = [dict(zip(header, row, strict=True)) for row in rows]
    assert [c["time_utc"] for c in cells] == sorted(c["time_utc"] for c in cells)
    assert cells[0]["time_utc"] == "2026-12-01T15:30:00Z"
    assert [c["estimated"] for c in cells] == ["no", "no", "yes", "no"]
    assert cells[3]["model"] == "" and cells[3]["cost_source"] == "charge"
    assert cells[0]["key_source"] == "own" and cells[0]["channel"] == "C1"


def test_numbers_are_exact_decimals_not_floats() -> None:
    text = ledger_csv([entry("0.0000188")], window_for(None, 1, NOW))
    assert "0.0000188" in text and "e-" not in text.lower()


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=30))
def test_any_text_round_trips_and_never_starts_like_a_formula(name: str) -> None:
    safe = csv_safe(name)
    assert safe.removeprefix("'") == name or safe == name
    assert not safe.startswith(("=", "+", "-", "@", "\t", "\r", "\n"))
    text = ledger_csv([entry("1", model=name)], window_for(None, 1, NOW))
    [_header, row] = parse(text)
    assert row[CSV_COLUMNS.index("model")] == safe
