"""The pure budget rules: UTC periods, which caps apply, allow/refuse with the right cap and
reset time, and the 80 %/100 % lines a charge crosses (property tests with hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.store import SpendSnapshot
from bot.teams.budget import (
    BudgetCaps,
    Crossing,
    applies,
    crossed_thresholds,
    decide,
    period_bounds,
)

NOW = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2200, 12, 30), timezones=st.just(UTC)
)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
# Money in cents up to $10,000, and amounts to 1e-10 USD precision.
MONEY = st.integers(min_value=0, max_value=1_000_000).map(lambda c: Decimal(c) / 100)
AMOUNTS = st.integers(min_value=0, max_value=10**12).map(lambda u: Decimal(u).scaleb(-10))
CAPS = st.one_of(st.none(), MONEY)


def snap(day: str = "0", month: str = "0", workspace: str = "0") -> SpendSnapshot:
    return SpendSnapshot(
        user_day_usd=Decimal(day),
        user_month_usd=Decimal(month),
        workspace_month_usd=Decimal(workspace),
    )


@st.composite
def snapshots(draw: st.DrawFn) -> SpendSnapshot:
    # Consistent like the store's: a user's day is within their month, within the workspace's.
    day = draw(MONEY)
    month = day + draw(MONEY)
    return SpendSnapshot(
        user_day_usd=day, user_month_usd=month, workspace_month_usd=month + draw(MONEY)
    )


# -- periods -----------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(now=TIMES, tz=OFFSETS)
def test_periods_are_the_utc_day_and_month_around_now(now: datetime, tz: timezone) -> None:
    local = now.astimezone(tz)  # the same instant, written in another zone
    day, month, next_day, next_month = period_bounds(local)
    assert all(t.tzinfo == UTC for t in (day, month, next_day, next_month))
    assert month <= day <= now < next_day <= next_month
    assert next_day - day == timedelta(days=1)
    assert (day.hour, day.minute, day.second, day.microsecond) == (0, 0, 0, 0)
    assert month.day == 1 and month.date() == now.date().replace(day=1)
    assert next_month.day == 1 and (next_month - timedelta(days=1)).month == month.month
    assert 28 <= (next_month - month).days <= 31
    assert period_bounds(next_month - timedelta(microseconds=1))[1] == month


def test_a_naive_time_is_utc_and_december_rolls_over() -> None:
    day, month, next_day, next_month = period_bounds(datetime(2026, 12, 31, 23, 59, 59))
    assert day == datetime(2026, 12, 31, tzinfo=UTC)
    assert month == datetime(2026, 12, 1, tzinfo=UTC)
    assert next_day == next_month == datetime(2027, 1, 1, tzinfo=UTC)


# -- which caps apply --------------------------------------------------------------------------


def test_caps_apply_to_the_workspace_key_and_to_own_keys_opted_in() -> None:
    caps = BudgetCaps(user_daily=Decimal(1), own_key_opt_in=frozenset({"U_OPT"}))
    assert applies(caps, "U_ANY", "workspace")
    assert applies(caps, "U_OPT", "own")
    assert not applies(caps, "U_ANY", "own")


def test_caps_from_and_to_the_policy_value() -> None:
    value = {
        "workspace_monthly_usd": "100.00",
        "user_daily_usd": None,
        "user_monthly_usd": "20",
        "own_key_opt_in": ["U_B", "U_A"],
    }
    caps = BudgetCaps.from_policy(value)
    assert caps.workspace_monthly == Decimal("100.00") and caps.user_daily is None
    assert caps.own_key_opt_in == {"U_A", "U_B"} and caps.any_set
    assert caps.to_policy() == {**value, "own_key_opt_in": ["U_A", "U_B"]}
    assert BudgetCaps.from_policy(None) == BudgetCaps() and not BudgetCaps().any_set
    for bad in ("-1", "ten", "NaN"):
        with pytest.raises(ValueError):
            BudgetCaps.from_policy({"user_daily_usd": bad})


# -- decide ------------------------------------------------------------------------------------


def test_no_cap_allows_everything() -> None:
    decision = decide(snap("999", "999", "999"), Decimal("50"), BudgetCaps(), NOW)
    assert decision.allowed and decision.cap_name is None and decision.crossed == []
    assert decision.resets_at == datetime(2026, 12, 16, tzinfo=UTC)


def test_a_cap_is_inclusive() -> None:
    caps = BudgetCaps(workspace_monthly=Decimal("10"))
    assert decide(snap(workspace="9"), Decimal("1"), caps, NOW).allowed
    refused = decide(snap(workspace="9"), Decimal("1.01"), caps, NOW)
    assert not refused.allowed and refused.crossed == []
    assert (refused.cap_name, refused.cap_usd, refused.spent_usd) == (
        "workspace_monthly",
        Decimal("10"),
        Decimal("9"),
    )
    assert refused.resets_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert refused.remaining_usd == Decimal("1")


def test_the_refusal_names_the_cap_that_resets_last() -> None:
    caps = BudgetCaps(user_daily=Decimal("1"), user_monthly=Decimal("5"))
    both = decide(snap("1", "5", "5"), Decimal("0.5"), caps, NOW)
    assert not both.allowed and both.cap_name == "user_monthly"
    daily = decide(snap("1", "2", "2"), Decimal("0.5"), caps, NOW)
    assert not daily.allowed and daily.cap_name == "user_daily"
    assert daily.resets_at == datetime(2026, 12, 16, tzinfo=UTC)


def test_an_allowed_charge_names_the_cap_with_least_room() -> None:
    caps = BudgetCaps(workspace_monthly=Decimal("100"), user_daily=Decimal("2"))
    decision = decide(snap("1.5", "1.5", "10"), Decimal("0.1"), caps, NOW)
    assert decision.allowed and decision.cap_name == "user_daily"
    assert decision.remaining_usd == Decimal("0.5")


def test_negative_charges_are_refused() -> None:
    with pytest.raises(ValueError):
        decide(snap(), Decimal("-1"), BudgetCaps(), NOW)


@settings(max_examples=500, deadline=None)
@given(
    snapshot=snapshots(),
    amount=AMOUNTS,
    workspace=CAPS,
    daily=CAPS,
    monthly=CAPS,
)
def test_allowed_exactly_when_every_cap_still_holds(
    snapshot: SpendSnapshot,
    amount: Decimal,
    workspace: Decimal | None,
    daily: Decimal | None,
    monthly: Decimal | None,
) -> None:
    caps = BudgetCaps(workspace_monthly=workspace, user_daily=daily, user_monthly=monthly)
    decision = decide(snapshot, amount, caps, NOW)
    fits = [
        cap is None or spent + amount <= cap
        for cap, spent in [
            (workspace, snapshot.workspace_month_usd),
            (daily, snapshot.user_day_usd),
            (monthly, snapshot.user_month_usd),
        ]
    ]
    assert decision.allowed == all(fits)
    assert decision.amount_usd == amount
    if not decision.allowed:
        assert decision.cap_name is not None and decision.cap_usd is not None
        assert decision.spent_usd is not None and decision.spent_usd + amount > decision.cap_usd
        assert decision.crossed == []
        assert decision.resets_at > NOW


@settings(max_examples=500, deadline=None)
@given(snapshot=snapshots(), amounts=st.lists(AMOUNTS, min_size=1, max_size=12), cap=MONEY)
def test_each_line_is_crossed_once_as_spend_grows(
    snapshot: SpendSnapshot, amounts: list[Decimal], cap: Decimal
) -> None:
    caps = BudgetCaps(workspace_monthly=cap)
    start = snapshot.workspace_month_usd
    seen: list[Crossing] = []
    for amount in amounts:
        before = snapshot.workspace_month_usd
        found = crossed_thresholds(snapshot, amount, caps, NOW)
        for crossing in found:
            line = cap * crossing.pct / 100
            assert before < line <= before + amount
            assert crossing.spent_usd == before + amount and crossing.for_workspace
        seen += found
        snapshot = snapshot.model_copy(update={"workspace_month_usd": before + amount})
    end = snapshot.workspace_month_usd
    expected = [pct for pct in (80, 100) if start < cap * pct / 100 <= end]
    assert sorted(c.pct for c in seen) == expected  # no line twice, none skipped


def test_crossings_carry_their_period_and_notice_key() -> None:
    caps = BudgetCaps(
        workspace_monthly=Decimal("100"), user_daily=Decimal("1"), user_monthly=Decimal("10")
    )
    decision = decide(snap("0.7", "7.8", "79.8"), Decimal("0.3"), caps, NOW)
    assert decision.allowed
    keys = {(c.cap_name, c.pct): c.notice_key("U_ALICE") for c in decision.crossed}
    assert keys == {
        ("user_daily", 80): "2026-12-15:U_ALICE:80",
        ("user_daily", 100): "2026-12-15:U_ALICE:100",
        ("user_monthly", 80): "2026-12:U_ALICE:80",
        ("workspace_monthly", 80): "2026-12:workspace:80",
    }
    daily = next(c for c in decision.crossed if c.cap_name == "user_daily")
    assert daily.resets_at == datetime(2026, 12, 16, tzinfo=UTC)
    assert daily.spent_usd == Decimal("1.0") and daily.cap_usd == Decimal("1")
