"""Spend reservations on both backends: check-and-hold is one serialised transaction across
replicas, expired holds stop counting, settling is once only, and what counts against caps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.store import LedgerEntry, Owner, SpendSnapshot, Store, UsageRecord
from bot.store.spend_holds import KEEP_EXPIRED_S
from bot.teams import budget
from bot.teams.budget import BudgetCaps, BudgetDecision
from tests.store.conftest import BackendUnderTest

ALICE = Owner(platform="slack", workspace="T1", user="U_ALICE")
BOB = Owner(platform="slack", workspace="T1", user="U_BOB")
CAROL_ELSEWHERE = Owner(platform="slack", workspace="T2", user="U_CAROL")
NOW = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)


def _charge(
    owner: Owner, cost: str, at: datetime = NOW, key_source: str = "workspace"
) -> tuple[UsageRecord, LedgerEntry]:
    usage = UsageRecord(
        owner=owner, service="alltoken", command="video", cost_usd=Decimal(cost), created_at=at
    )
    entry = LedgerEntry.model_validate(
        {
            "owner": owner,
            "service": "alltoken",
            "command": "video",
            "cost_usd": cost,
            "cost_source": "reported",
            "key_source": key_source,
            "created_at": at,
        }
    )
    return usage, entry


async def _snapshot(store: Store, owner: Owner = ALICE, now: datetime = NOW) -> SpendSnapshot:
    """What a reservation at `now` sees (a decision that refuses, so nothing is held)."""
    seen: list[SpendSnapshot] = []

    def look(snapshot: SpendSnapshot) -> BudgetDecision:
        seen.append(snapshot)
        return BudgetDecision(allowed=False, amount_usd=Decimal(0), resets_at=now)

    _, hold = await store.reserve_spend(
        owner, "alltoken", "video", Decimal(0), "workspace", decide=look, now=now, ttl_s=60
    )
    assert hold is None
    [snapshot] = seen
    return snapshot


def _usd(day: str, month: str, workspace: str) -> SpendSnapshot:
    return SpendSnapshot(
        user_day_usd=Decimal(day),
        user_month_usd=Decimal(month),
        workspace_month_usd=Decimal(workspace),
    )


async def test_twenty_concurrent_reservations_from_two_replicas_fit_the_cap_exactly(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    caps = BudgetCaps(workspace_monthly=Decimal("10"))

    async def reserve(store: Store, i: int) -> bool:
        owner = Owner(platform="slack", workspace="T1", user=f"U{i}")
        decision, hold = await store.reserve_spend(
            owner,
            "alltoken",
            "video",
            Decimal("1"),
            "workspace",
            decide=lambda s: budget.decide(s, Decimal("1"), caps, NOW),
            now=NOW,
            ttl_s=600,
        )
        assert (hold is not None) == decision.allowed
        return decision.allowed

    a, b = two
    results = await asyncio.gather(*(reserve(store, i) for i, store in enumerate([a, b] * 10)))
    assert results.count(True) == 10
    assert await backend.raw("SELECT COUNT(*) FROM spend_holds") == [(10,)]
    assert (await _snapshot(b)).workspace_month_usd == Decimal("10")


async def test_expired_holds_do_not_count_but_still_settle(two: tuple[Store, Store]) -> None:
    a, b = two
    allow = BudgetDecision(allowed=True, amount_usd=Decimal(3), resets_at=NOW)
    _, hold = await a.reserve_spend(
        ALICE,
        "alltoken",
        "video",
        Decimal("3"),
        "workspace",
        decide=lambda s: allow,
        now=NOW,
        ttl_s=60,
    )
    assert hold is not None and hold.expires_epoch == NOW.timestamp() + 60
    assert await _snapshot(b, now=NOW + timedelta(seconds=59)) == _usd("3", "3", "3")
    assert await _snapshot(b, now=NOW + timedelta(seconds=61)) == _usd("0", "0", "0")
    # The job outlived its hold: its real cost is still recorded, once.
    assert await b.settle_spend(hold.id, *_charge(ALICE, "2.5")) is True
    assert await a.settle_spend(hold.id, *_charge(ALICE, "2.5")) is False
    assert await _snapshot(a, now=NOW + timedelta(seconds=61)) == _usd("2.5", "2.5", "2.5")


async def test_settling_is_once_only(two: tuple[Store, Store], backend: BackendUnderTest) -> None:
    a, b = two
    allow = BudgetDecision(allowed=True, amount_usd=Decimal(1), resets_at=NOW)
    _, hold = await a.reserve_spend(
        ALICE,
        "alltoken",
        "video",
        Decimal("1"),
        "workspace",
        decide=lambda s: allow,
        now=NOW,
        ttl_s=600,
    )
    assert hold is not None and await b.get_spend_hold(hold.id) == hold
    usage, entry = _charge(ALICE, "0.75")
    settled = await asyncio.gather(
        *(store.settle_spend(hold.id, usage, entry) for store in [a, b] * 3)
    )
    assert settled.count(True) == 1
    assert await backend.raw("SELECT cost_usd FROM ledger") == [("0.75",)]
    assert await backend.raw("SELECT COUNT(*) FROM usage") == [(1,)]
    # The hold is kept, settled, so a late settle or release finds it and does nothing.
    assert await backend.raw("SELECT state FROM spend_holds") == [("settled",)]
    assert await a.get_spend_hold(hold.id) is None
    assert await a.get_spend_hold(hold.id, released=True) is None
    assert await a.release_spend(hold.id) is False
    assert await backend.raw("SELECT state FROM spend_holds") == [("settled",)]
    assert await b.settle_spend(hold.id, usage, entry) is False
    assert await backend.raw("SELECT COUNT(*) FROM ledger") == [(1,)]


async def test_a_released_hold_stops_counting_and_charges_nothing_by_itself(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, b = two
    allow = BudgetDecision(allowed=True, amount_usd=Decimal(4), resets_at=NOW)
    _, hold = await a.reserve_spend(
        ALICE,
        "alltoken",
        "video",
        Decimal("4"),
        "workspace",
        decide=lambda s: allow,
        now=NOW,
        ttl_s=600,
    )
    assert hold is not None
    assert await b.release_spend(hold.id) is True
    assert await a.release_spend(hold.id) is False
    assert await backend.raw("SELECT COUNT(*) FROM ledger") == [(0,)]
    assert await _snapshot(a) == _usd("0", "0", "0")
    assert await a.get_spend_hold(hold.id) is None  # no longer held
    assert await a.get_spend_hold(hold.id, released=True) == hold  # but it may still settle


async def test_a_hold_settles_only_into_its_own_workspace(two: tuple[Store, Store]) -> None:
    a, _ = two
    allow = BudgetDecision(allowed=True, amount_usd=Decimal(1), resets_at=NOW)
    _, hold = await a.reserve_spend(
        ALICE,
        "alltoken",
        "video",
        Decimal("1"),
        "workspace",
        decide=lambda s: allow,
        now=NOW,
        ttl_s=600,
    )
    assert hold is not None
    assert await a.settle_spend(hold.id, *_charge(CAROL_ELSEWHERE, "1")) is False
    assert await a.settle_spend(hold.id, *_charge(ALICE, "1")) is True


async def test_what_counts_against_the_caps(two: tuple[Store, Store]) -> None:
    a, b = two
    yesterday = NOW - timedelta(days=1)
    last_month = datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC)
    for owner, cost, at, key in [
        (ALICE, "1.00", NOW, "workspace"),  # today: day, month, workspace
        (ALICE, "2.00", yesterday, "workspace"),  # this month: month, workspace
        (ALICE, "4.00", last_month, "workspace"),  # another period: nothing
        (BOB, "8.00", NOW, "workspace"),  # another user: the workspace only
        (ALICE, "16.00", NOW, "own"),  # own key, not opted in: nothing
        (CAROL_ELSEWHERE, "32.00", NOW, "workspace"),  # another workspace: nothing
    ]:
        await a.record_charge(*_charge(owner, cost, at, key))
    # `a`'s charges are still queued: its own reservation sees them (it flushes first).
    assert await _snapshot(a) == _usd("1", "3", "11")
    await a.set_policy("slack", "T1", "budget", {"own_key_opt_in": ["U_ALICE"]}, "U_ADMIN")
    assert await _snapshot(b) == _usd("17", "19", "27")
    allow = BudgetDecision(allowed=True, amount_usd=Decimal(1), resets_at=NOW)
    await b.reserve_spend(
        BOB,
        "alltoken",
        "video",
        Decimal("0.5"),
        "workspace",
        decide=lambda s: allow,
        now=NOW,
        ttl_s=40 * 24 * 3600,  # still held next month
    )
    # Bob's open hold counts for the workspace, not for Alice.
    assert await _snapshot(a) == _usd("17", "19", "27.5")
    assert await _snapshot(a, BOB) == _usd("8.5", "8.5", "27.5")
    # A new month starts from zero, open holds aside.
    assert await _snapshot(a, now=datetime(2027, 1, 1, tzinfo=UTC)) == _usd("0", "0", "0.5")


async def test_a_decision_that_fails_holds_nothing(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, _ = two

    def broken(snapshot: SpendSnapshot) -> BudgetDecision:
        raise RuntimeError("decision failed")

    with pytest.raises(RuntimeError, match="decision failed"):
        await a.reserve_spend(
            ALICE, "alltoken", "video", Decimal(1), "workspace", decide=broken, now=NOW, ttl_s=1
        )
    assert await backend.raw("SELECT COUNT(*) FROM spend_holds") == [(0,)]


async def test_long_expired_holds_are_pruned(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, _ = two
    allow = BudgetDecision(allowed=True, amount_usd=Decimal(1), resets_at=NOW)
    _, old = await a.reserve_spend(
        ALICE,
        "alltoken",
        "video",
        Decimal(1),
        "workspace",
        decide=lambda s: allow,
        now=NOW,
        ttl_s=60,
    )
    later = NOW + timedelta(seconds=60 + KEEP_EXPIRED_S + 1)
    await a.reserve_spend(
        ALICE,
        "alltoken",
        "video",
        Decimal(1),
        "workspace",
        decide=lambda s: allow,
        now=later,
        ttl_s=60,
    )
    assert old is not None and await a.get_spend_hold(old.id) is None
    assert await backend.raw("SELECT COUNT(*) FROM spend_holds") == [(1,)]


async def _held(store: Store, amount: str = "2") -> str:
    allow = BudgetDecision(allowed=True, amount_usd=Decimal(amount), resets_at=NOW)
    _, hold = await store.reserve_spend(
        ALICE,
        "alltoken",
        "video",
        Decimal(amount),
        "workspace",
        decide=lambda s: allow,
        now=NOW,
        ttl_s=600,
    )
    assert hold is not None
    return hold.id


async def test_a_charge_that_arrives_after_a_release_is_recorded_once(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    """A Cancel released the hold while the backend was delivering (and charging): the
    delivery's settle still records that charge, once, and it counts against the caps."""
    a, b = two
    hold_id = await _held(a)
    assert await b.release_spend(hold_id) is True  # the Cancel
    assert await a.settle_spend(hold_id, *_charge(ALICE, "1.5")) is True  # the delivery
    assert await b.settle_spend(hold_id, *_charge(ALICE, "1.5")) is False  # a resumed retry
    assert await a.release_spend(hold_id) is False  # settled stays settled
    assert await backend.raw("SELECT cost_usd FROM ledger") == [("1.5",)]
    assert await backend.raw("SELECT COUNT(*) FROM usage") == [(1,)]
    assert await backend.raw("SELECT state FROM spend_holds") == [("settled",)]
    assert await _snapshot(b) == _usd("1.5", "1.5", "1.5")


async def test_a_release_racing_settles_never_loses_or_doubles_the_charge(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, b = two
    ids = [await _held(a, "1") for _ in range(5)]
    work = []
    for i, hold_id in enumerate(ids):
        settler, releaser = (a, b) if i % 2 else (b, a)
        work += [
            releaser.release_spend(hold_id),
            settler.settle_spend(hold_id, *_charge(ALICE, "0.5")),
            settler.settle_spend(hold_id, *_charge(ALICE, "0.5")),
        ]
    await asyncio.gather(*work)
    assert await backend.raw("SELECT COUNT(*), COUNT(DISTINCT id) FROM spend_holds") == [(5, 5)]
    assert await backend.raw("SELECT DISTINCT state FROM spend_holds") == [("settled",)]
    assert await backend.raw("SELECT COUNT(*) FROM ledger") == [(5,)]
    assert await _snapshot(a) == _usd("2.5", "2.5", "2.5")
