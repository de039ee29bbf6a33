"""The spend ledger on both backends: a charge is its usage row and its ledger row together,
exact decimals, range and per-user reads, this replica's queued rows read back, no prompt text."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from bot.store import LedgerEntry, Owner, SecretBox, Store, UsageRecord
from bot.store.ledger import from_units, to_units
from tests.store.conftest import BackendUnderTest

ALICE = Owner(platform="slack", workspace="T1", user="U_ALICE")
BOB = Owner(platform="slack", workspace="T1", user="U_BOB")
ALICE_ELSEWHERE = Owner(platform="slack", workspace="T2", user="U_ALICE")
T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
PROMPT = "summarise the secret merger plan for project nightingale"


@pytest.fixture
async def store(backend: BackendUnderTest, box: SecretBox) -> AsyncIterator[Store]:
    s = await backend.open(box, allow_new_store=True)
    try:
        yield s
    finally:
        await s.close()


def charge(
    owner: Owner = ALICE, cost: str = "0.0000188000", at: datetime = T0, **kw: object
) -> tuple[UsageRecord, LedgerEntry]:
    usage = UsageRecord(
        owner=owner,
        service="alltoken",
        command="chat",
        model="gpt-4o-mini",
        prompt_tokens=12,
        completion_tokens=30,
        cost_usd=Decimal(cost),
        request_id="req-1",
        conversation_key="slack:T1:C1:1.0",
        created_at=at,
    )
    fields: dict[str, object] = {
        "owner": owner,
        "channel": "C1",
        "service": "alltoken",
        "command": "chat",
        "model": "gpt-4o-mini",
        "prompt_tokens": 12,
        "completion_tokens": 30,
        "cost_usd": Decimal(cost),
        "cost_source": "reported",
        "key_source": "own",
        "request_id": "req-1",
        "created_at": at,
    }
    fields.update(kw)
    return usage, LedgerEntry.model_validate(fields)


async def test_a_charge_writes_its_usage_row_and_ledger_row(
    store: Store, backend: BackendUnderTest
) -> None:
    usage, entry = charge()
    await store.record_charge(usage, entry)
    rows = await store.ledger_rows("slack", "T1", user="U_ALICE", since=T0 - timedelta(days=1))
    # Read back without a flush by hand: this replica's queued rows are flushed by the read.
    assert rows == [entry]
    assert rows[0].cost_usd == Decimal("0.0000188000") and str(rows[0].cost_usd) == "0.0000188000"
    assert [u.request_id for u in await store.list_usage(ALICE)] == ["req-1"]
    raw = await backend.raw("SELECT cost_usd, cost_units, cost_source, key_source FROM ledger")
    assert raw == [("0.0000188000", 188000, "reported", "own")]


async def _break_ledger_writes(backend: BackendUnderTest, broken: bool) -> None:
    """Make every ledger insert fail (and work again), as a store refusing writes would."""
    if backend.is_sqlite:
        await backend.raw(
            "CREATE TRIGGER ledger_fault BEFORE INSERT ON ledger BEGIN"
            " SELECT RAISE(ABORT, 'simulated write failure'); END"
            if broken
            else "DROP TRIGGER ledger_fault"
        )
    else:
        await backend.raw(
            "ALTER TABLE ledger ADD CONSTRAINT ledger_fault CHECK (command = '') NOT VALID"
            if broken
            else "ALTER TABLE ledger DROP CONSTRAINT ledger_fault"
        )


async def test_a_charge_is_written_whole_or_not_at_all(
    store: Store, backend: BackendUnderTest
) -> None:
    store._db.retry_interval_s = 3600  # only flushes retry in this test
    await _break_ledger_writes(backend, broken=True)
    for i in range(3):
        usage, entry = charge(request_id=f"req-{i}")
        await store.record_charge(usage.model_copy(update={"request_id": f"req-{i}"}), entry)
        await store._db.flush()
    assert store.health().degraded and store.health().queued_rows == 3
    # The failed batch wrote no usage row without its ledger row.
    assert await backend.raw("SELECT COUNT(*) FROM usage") == [(0,)]
    # Over the bound, the oldest *charges* go, each with both of its rows.
    store.max_queued_rows = 1
    usage, entry = charge(request_id="req-3")
    await store.record_charge(usage.model_copy(update={"request_id": "req-3"}), entry)
    assert store.health().queued_rows == 1 and store.health().dropped_rows == 3
    await _break_ledger_writes(backend, broken=False)
    rows = await store.ledger_rows("slack", "T1", user=None, since=T0)  # the read retries
    assert [r.request_id for r in rows] == ["req-3"]
    assert [u.request_id for u in await store.list_usage(ALICE)] == ["req-3"]
    assert not store.health().degraded


async def test_owners_must_agree(store: Store) -> None:
    usage, entry = charge()
    with pytest.raises(ValueError, match="same owner"):
        await store.record_charge(usage.model_copy(update={"owner": BOB}), entry)


async def test_rows_by_user_workspace_and_time_range(store: Store) -> None:
    plan = [
        (ALICE, "0.10", T0),
        (BOB, "0.20", T0 + timedelta(hours=1)),
        (ALICE, "0.30", T0 + timedelta(days=1)),
        (ALICE_ELSEWHERE, "9.99", T0),
    ]
    for owner, cost, at in plan:
        await store.record_charge(*charge(owner, cost, at))
    mine = await store.ledger_rows("slack", "T1", user="U_ALICE", since=T0)
    assert [r.cost_usd for r in mine] == [Decimal("0.10"), Decimal("0.30")]
    everyone = await store.ledger_rows("slack", "T1", user=None, since=T0)
    assert [r.owner.user for r in everyone] == ["U_ALICE", "U_BOB", "U_ALICE"]  # oldest first
    # `until` is exclusive, `since` inclusive.
    day = await store.ledger_rows("slack", "T1", user=None, since=T0, until=T0 + timedelta(days=1))
    assert [r.cost_usd for r in day] == [Decimal("0.10"), Decimal("0.20")]
    later = await store.ledger_rows("slack", "T1", user=None, since=T0 + timedelta(minutes=1))
    assert [r.cost_usd for r in later] == [Decimal("0.20"), Decimal("0.30")]
    # A naive datetime is UTC, like every stored time.
    naive = await store.ledger_rows("slack", "T1", user=None, since=T0.replace(tzinfo=None))
    assert len(naive) == 3
    assert await store.ledger_rows("discord", "T1", user=None, since=T0) == []


async def test_every_field_round_trips(store: Store) -> None:
    usage, entry = charge(
        cost="0",
        cost_source="estimate",
        key_source="workspace",
        model=None,
        channel="",
        request_id=None,
    )
    await store.record_charge(usage, entry)
    [row] = await store.ledger_rows("slack", "T1", user="U_ALICE", since=T0)
    assert row == entry
    assert row.cost_source == "estimate" and row.key_source == "workspace"


async def test_another_replica_reads_the_charge(backend: BackendUnderTest, box: SecretBox) -> None:
    a = await backend.open(box, allow_new_store=True)
    b = await backend.open(box)
    try:
        await a.record_charge(*charge())
        await a._db.flush()
        assert len(await b.ledger_rows("slack", "T1", user=None, since=T0)) == 1
    finally:
        await b.close()
        await a.close()


async def test_the_ledger_holds_no_prompt_text(store: Store, backend: BackendUnderTest) -> None:
    # A LedgerEntry has no field that could carry a prompt, and unknown fields are refused.
    with pytest.raises(ValueError, match="prompt"):
        LedgerEntry.model_validate({**charge()[1].model_dump(), "prompt": PROMPT})
    await store.record_charge(*charge())
    await store.close()
    if backend.is_sqlite:
        assert isinstance(backend.where, type(backend.data_dir))
        with sqlite3.connect(backend.where) as conn:
            columns = [r[1] for r in conn.execute("PRAGMA table_info(ledger)")]
    else:
        found = await backend.raw(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'ledger'"
        )
        columns = [c for (c,) in found]
    assert not any("prompt" in c and "tokens" not in c for c in columns)
    assert {"cost_usd", "cost_source", "key_source", "created_epoch", "channel"} <= set(columns)


@pytest.mark.parametrize(
    ("text", "units"),
    [("0", 0), ("0.0000188000", 188000), ("1", 10**10), ("12.34", 123400000000)],
)
def test_units_are_exact_for_ten_decimals(text: str, units: int) -> None:
    assert to_units(Decimal(text)) == units
    assert from_units(units) == Decimal(text)
    assert from_units(Decimal(units)) == Decimal(text)  # a PostgreSQL sum


def test_unit_sums_read_as_money() -> None:
    assert str(from_units(10**11)) == "10.00"
    assert str(from_units(0)) == "0.00"
    assert str(from_units(25 * 10**9)) == "2.50"
    assert str(from_units(188000)) == "0.0000188"
    assert to_units(Decimal("0.00000000004")) == 0  # below 1e-10 USD: rounded half-even


def test_costs_must_be_finite_and_not_negative() -> None:
    for bad in ("-0.01", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            charge(cost=bad)
