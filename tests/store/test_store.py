"""Tests for bot.store on both backends: encryption at rest, per-owner isolation, jobs CAS,
durability, audit, migrations. `backend` (tests/store/conftest.py) is SQLite or PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from bot.core.messages import Destination
from bot.store import (
    SCHEMA_VERSION,
    AuditEntry,
    JobNotFoundError,
    JobRecord,
    LastCall,
    Owner,
    SecretBox,
    SecretBoxError,
    Store,
    StoreError,
    UsageRecord,
    postgres,
)
from bot.store import audit as audit_module
from bot.store.db import MIGRATIONS, Database
from tests.store.conftest import BackendUnderTest

ALICE = Owner(platform="slack", workspace="T1", user="U_ALICE")
BOB = Owner(platform="slack", workspace="T1", user="U_BOB")
# Same user id in another workspace is a different owner.
ALICE_ELSEWHERE = Owner(platform="slack", workspace="T2", user="U_ALICE")

SECRET = "sk-at-Zq7PlaintextNeverOnDisk9xW4"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "tokenbot.db"


@pytest.fixture
async def store(backend: BackendUnderTest, box: SecretBox) -> AsyncIterator[Store]:
    s = await backend.open(box)
    try:
        yield s
    finally:
        await s.close()


def _job(job_id: str, owner: Owner = ALICE, **kw: object) -> JobRecord:
    fields: dict[str, object] = {
        "id": job_id,
        "kind": "image",
        "owner": owner,
        "destination": {"platform": owner.platform, "channel": "C1"},
    }
    fields.update(kw)
    return JobRecord.model_validate(fields)


def _mode(path: Path) -> int | None:
    # Sync helper: file checks in async tests would trip ruff's ASYNC240.
    return stat.S_IMODE(path.stat().st_mode) if path.exists() else None


def _disk_bytes(db_path: Path) -> bytes:
    # The main file plus whatever WAL/shared-memory files exist right now.
    parts = [db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")]
    return b"".join(p.read_bytes() for p in parts if p.exists())


# -- the master key and the store ---------------------------------------------------------


async def test_store_open_with_wrong_master_key_fails(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    s = await backend.open(box)
    await s.put_credential(ALICE, "alltoken", SECRET)
    await s.close()
    with pytest.raises(SecretBoxError, match="master key changed"):
        await backend.open(SecretBox.generate())
    # The right key still works afterwards.
    s = await backend.open(box)
    assert await s.get_credential(ALICE, "alltoken") == SECRET
    await s.close()


async def test_new_master_key_accepted_when_nothing_is_stored(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    s = await backend.open(box)
    await s.record_usage(UsageRecord(owner=ALICE, service="alltoken", command="chat"))
    await s.close()
    # No credential could be lost, so a new key is taken (and sealed) rather than refused.
    new_box = SecretBox.generate()
    s = await backend.open(new_box)
    await s.close()
    s = await backend.open(new_box)
    assert len(await s.list_usage(ALICE)) == 1
    await s.close()


# -- database basics ----------------------------------------------------------------------


@posix_only
async def test_open_creates_dir_private_file_and_wal(db_path: Path, box: SecretBox) -> None:
    async with await Store.open(db_path, box) as s:
        assert s.backend == "sqlite" and s.path == db_path and s.location == str(db_path)
    assert _mode(db_path) == 0o600
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_migrations_idempotent_on_reopen(backend: BackendUnderTest, box: SecretBox) -> None:
    for _ in range(3):
        s = await backend.open(box)
        assert s.backend == backend.name
        assert await s.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        await s.record_usage(UsageRecord(owner=ALICE, service="alltoken", command="chat"))
        await s.close()
    rows = await backend.raw("SELECT version FROM schema_version ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, SCHEMA_VERSION + 1))
    s = await backend.open(box)
    assert len(await s.list_usage(ALICE)) == 3
    await s.close()


async def test_appended_migration_runs_once_and_atomically(backend: BackendUnderTest) -> None:
    db: Database | postgres.PostgresDatabase
    if isinstance(backend.where, Path):
        db, known, syntax_error = await Database.open(backend.where), MIGRATIONS, sqlite3.Error
        tables = "SELECT COUNT(*) FROM sqlite_master WHERE name = 'half'"
    else:
        db = await postgres.PostgresDatabase.open(backend.where)
        known, syntax_error = postgres.MIGRATIONS, asyncpg.PostgresSyntaxError
        tables = "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'half'"
    try:
        v2 = (*known, ("CREATE TABLE extra (x INTEGER)", "INSERT INTO extra VALUES (1)"))
        await db._migrate(v2)
        await db._migrate(v2)  # second run is a no-op
        assert await db.schema_version() == len(known) + 1
        async with db.read() as conn:
            row = await conn.fetchone("SELECT COUNT(*) FROM extra")
        assert row is not None and row[0] == 1

        # A failing migration leaves neither its first statement nor its version behind.
        broken = (*v2, ("CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL"))
        with pytest.raises(syntax_error):
            await db._migrate(broken)
        assert await db.schema_version() == len(known) + 1
        async with db.read() as conn:
            row = await conn.fetchone(tables)
        assert row is not None and row[0] == 0
    finally:
        await db.close()


async def test_newer_schema_is_refused(backend: BackendUnderTest, box: SecretBox) -> None:
    s = await backend.open(box)
    await s.put_credential(ALICE, "alltoken", SECRET)
    await s.close()
    await backend.raw("INSERT INTO schema_version VALUES (999, '2030-01-01T00:00:00+00:00')")
    with pytest.raises(StoreError, match="newer than this tokenbot understands") as info:
        await backend.open(box)
    setting = "TOKENBOT_DATA_DIR" if backend.is_sqlite else "TOKENBOT_DATABASE_URL"
    assert "schema version 999" in str(info.value) and setting in str(info.value)
    rows = await backend.raw("SELECT COUNT(*) FROM credentials")
    assert rows == [(1,)]  # refused, not emptied


async def test_closed_store_raises(backend: BackendUnderTest, box: SecretBox) -> None:
    s = await backend.open(box)
    await s.close()
    await s.close()  # idempotent
    with pytest.raises(StoreError):
        await s.get_credential(ALICE, "alltoken")


async def test_cancelled_writes_leave_the_connection_usable(store: Store) -> None:
    # Cancel writes at every await point; none may leave a transaction open behind it.
    for delay in range(12):
        task = asyncio.create_task(
            store.record_usage(UsageRecord(owner=BOB, service="s", command=f"c{delay}"))
        )
        for _ in range(delay):
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await store.put_credential(ALICE, "alltoken", SECRET)
    assert await store.get_credential(ALICE, "alltoken") == SECRET
    assert len(await store.list_usage(BOB)) <= 12


# -- credentials ------------------------------------------------------------------------


async def test_credential_round_trip(store: Store) -> None:
    assert await store.get_credential(ALICE, "alltoken") is None
    assert await store.credential_info(ALICE, "alltoken") is None

    info = await store.put_credential(ALICE, "alltoken", SECRET, meta={"label": "work"})
    assert info.service == "alltoken"
    assert info.fingerprint == "…" + SECRET[-4:]
    assert info.meta == {"label": "work"}
    assert info.created_at.tzinfo is UTC
    assert SECRET not in info.model_dump_json()
    assert await store.get_credential(ALICE, "alltoken") == SECRET
    assert await store.credential_info(ALICE, "alltoken") == info

    await asyncio.sleep(0.002)
    replaced = await store.put_credential(ALICE, "alltoken", "sk-at-SecondKeyValue0000abcd")
    assert replaced.created_at == info.created_at
    assert replaced.updated_at > info.updated_at
    assert replaced.fingerprint == "…abcd"
    assert replaced.meta == {}
    assert await store.get_credential(ALICE, "alltoken") == "sk-at-SecondKeyValue0000abcd"

    await store.put_credential(ALICE, "openmarlin", "claw_wsk_0123456789abcdef")
    assert [c.service for c in await store.list_credentials(ALICE)] == ["alltoken", "openmarlin"]

    assert await store.delete_credential(ALICE, "alltoken") is True
    assert await store.delete_credential(ALICE, "alltoken") is False
    assert await store.get_credential(ALICE, "alltoken") is None
    assert await store.get_credential(ALICE, "openmarlin") == "claw_wsk_0123456789abcdef"


async def test_short_secret_has_no_visible_tail(store: Store) -> None:
    info = await store.put_credential(ALICE, "x", "short")
    assert info.fingerprint == "…"


async def test_empty_secret_rejected(store: Store) -> None:
    with pytest.raises(ValueError):
        await store.put_credential(ALICE, "alltoken", "")


async def test_credentials_encrypted_in_the_database(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await backend.open(box) as s:
        await s.put_credential(ALICE, "alltoken", SECRET)
    [(ciphertext, fingerprint)] = await backend.raw(
        'SELECT ciphertext, fingerprint FROM credentials WHERE "user" = ?', (ALICE.user,)
    )
    assert isinstance(ciphertext, bytes) and SECRET.encode() not in ciphertext
    assert fingerprint == "…" + SECRET[-4:]
    assert box.decrypt(bytes(ciphertext)) == SECRET


async def test_credentials_encrypted_at_rest(db_path: Path, box: SecretBox) -> None:
    s = await Store.open(db_path, box)
    await s.put_credential(ALICE, "alltoken", SECRET)
    await s.put_credential(BOB, "alltoken", SECRET + "bob")
    # While open, the fresh write lives in the -wal file.
    assert _mode(Path(f"{db_path}-wal")) is not None
    on_disk = _disk_bytes(db_path)
    assert SECRET.encode() not in on_disk
    assert SECRET[6:20].encode() not in on_disk  # not even the body without its prefix
    await s.close()
    assert SECRET.encode() not in _disk_bytes(db_path)
    with sqlite3.connect(db_path) as raw:
        (ciphertext,) = raw.execute(
            "SELECT ciphertext FROM credentials WHERE user = ?", (ALICE.user,)
        ).fetchone()
    assert box.decrypt(bytes(ciphertext)) == SECRET


async def test_credentials_isolated_per_owner(store: Store) -> None:
    await store.put_credential(ALICE, "alltoken", SECRET)
    for other in (BOB, ALICE_ELSEWHERE, Owner(platform="discord", workspace="T1", user="U_ALICE")):
        assert await store.get_credential(other, "alltoken") is None
        assert await store.credential_info(other, "alltoken") is None
        assert await store.list_credentials(other) == []
        assert await store.delete_credential(other, "alltoken") is False
    assert await store.get_credential(ALICE, "alltoken") == SECRET


def test_owner_of_inbound_like() -> None:
    dest = Destination(platform="slack", workspace="T1", channel="C1", user="U_ALICE")
    assert Owner.of(dest) == ALICE
    with pytest.raises(ValueError):
        ALICE.user = "x"  # type: ignore[misc]


# -- usage and last call ------------------------------------------------------------------


async def test_usage_round_trip_keeps_exact_decimals(store: Store) -> None:
    t0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    recs = [
        UsageRecord(
            owner=ALICE,
            service="alltoken",
            command="chat",
            model="gpt-4o",
            prompt_tokens=19,
            completion_tokens=12,
            cost_usd="0.0000188000",
            request_id="req_1",
            conversation_key="slack:T1:C1:",
            created_at=t0,
        ),
        UsageRecord(
            owner=ALICE,
            service="alltoken",
            command="image",
            cost_usd=Decimal("0.04"),
            created_at=t0 + timedelta(seconds=1),
        ),
        UsageRecord(owner=ALICE, service="openmarlin", command="run", created_at=t0),
    ]
    for r in recs:
        await store.record_usage(r)
    got = await store.list_usage(ALICE)
    assert got == [recs[1], recs[2], recs[0]]  # newest first; ties: last inserted first
    assert str(got[2].cost_usd) == "0.0000188000"
    assert got[1].cost_usd is None
    assert await store.list_usage(ALICE, limit=1) == [recs[1]]
    assert await store.list_usage(BOB) == []


def test_usage_rejects_nan_cost() -> None:
    with pytest.raises(ValueError):
        UsageRecord(owner=ALICE, service="alltoken", command="chat", cost_usd="NaN")


async def test_naive_datetimes_are_taken_as_utc(store: Store) -> None:
    naive = datetime(2026, 5, 1, 8, 30)
    await store.record_usage(UsageRecord(owner=ALICE, service="a", command="c", created_at=naive))
    (got,) = await store.list_usage(ALICE)
    assert got.created_at == naive.replace(tzinfo=UTC)


async def test_last_call_round_trip_and_isolation(store: Store) -> None:
    conv = "slack:T1:C1:1700000000.0001"
    assert await store.get_last_call(ALICE, conv) is None
    call = LastCall(
        command="chat",
        model="gpt-4o",
        prompt_tokens=19,
        completion_tokens=12,
        cost_usd="0.0000188000",
        input_price="0.0002000000",
        output_price="0.0012500000",
        request_id="req_abc",
    )
    await store.set_last_call(ALICE, conv, call)
    got = await store.get_last_call(ALICE, conv)
    assert got == call
    assert got is not None and str(got.input_price) == "0.0002000000"

    newer = LastCall(command="search", model="deepseek-v4-pro", request_id="req_2")
    await store.set_last_call(ALICE, conv, newer)
    assert await store.get_last_call(ALICE, conv) == newer
    assert await store.get_last_call(ALICE, "slack:T1:C2:") is None
    assert await store.get_last_call(BOB, conv) is None
    assert await store.get_last_call(ALICE_ELSEWHERE, conv) is None


# -- jobs -------------------------------------------------------------------------------


async def test_job_round_trip(store: Store) -> None:
    dest = Destination(
        platform="slack", workspace="T1", channel="C1", user="U_ALICE", extras={"a": "b"}
    )
    job = _job("job-1", destination=dest, state={"idempotency_key": "k1"}, next_run_at=5.0)
    assert job.destination["extras"] == {"a": "b"}
    await store.create_job(job)
    assert await store.get_job("job-1") == job
    assert Destination.model_validate(job.destination) == dest
    assert await store.get_job("nope") is None
    with pytest.raises(ValueError, match="already exists"):
        await store.create_job(job)

    await asyncio.sleep(0.002)
    updated = await store.update_job(
        "job-1", status="running", state={"task_id": "igen_1"}, error="transient", attempts=1
    )
    assert updated.status == "running"
    assert updated.state == {"idempotency_key": "k1", "task_id": "igen_1"}  # merged
    assert updated.error == "transient"
    assert updated.attempts == 1
    assert updated.next_run_at == 5.0  # untouched when not passed
    assert updated.updated_at > job.updated_at
    assert updated.created_at == job.created_at
    assert await store.get_job("job-1") == updated

    cleared = await store.update_job("job-1", error=None, next_run_at=None)
    assert cleared.error is None and cleared.next_run_at is None
    assert cleared.state == updated.state and cleared.status == "running"

    with pytest.raises(JobNotFoundError):
        await store.update_job("nope", status="done")
    with pytest.raises(ValueError):
        await store.update_job("job-1", status="finished")


async def test_jobs_for_owner(store: Store) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(3):
        await store.create_job(_job(f"a{i}", created_at=t0 + timedelta(minutes=i)))
    await store.create_job(_job("b0", owner=BOB))
    assert [j.id for j in await store.jobs_for(ALICE)] == ["a2", "a1", "a0"]
    assert [j.id for j in await store.jobs_for(ALICE, limit=2)] == ["a2", "a1"]
    assert [j.id for j in await store.jobs_for(BOB)] == ["b0"]
    assert await store.jobs_for(ALICE_ELSEWHERE) == []


async def test_transition_job_compare_and_set(store: Store) -> None:
    await store.create_job(_job("j", status="running"))
    assert await store.transition_job("j", {"pending"}, "running") is False
    assert await store.transition_job("missing", {"running"}, "done") is False
    assert await store.transition_job(
        "j", {"running"}, "delivering", state={"path": "/tmp/x.png"}, attempts=2
    )
    job = await store.get_job("j")
    assert job is not None
    assert (job.status, job.state, job.attempts) == ("delivering", {"path": "/tmp/x.png"}, 2)
    with pytest.raises(TypeError):
        await store.transition_job("j", {"delivering"}, "done", colour="red")
    assert await store.transition_job("j", "delivering", "done")  # a lone status is fine
    assert not await store.transition_job("j", "delivering", "done")
    with pytest.raises(ValueError):
        await store.transition_job("j", {"done"}, "complete")
    with pytest.raises(ValueError):
        await store.transition_job("j", {"don"}, "failed")


async def test_transition_job_exactly_one_winner_under_concurrency(store: Store) -> None:
    await store.create_job(_job("race", status="running"))

    async def attempt(i: int) -> bool:
        return await store.transition_job("race", {"running"}, "done", state={"winner": i})

    results = await asyncio.gather(*(attempt(i) for i in range(20)))
    assert results.count(True) == 1
    job = await store.get_job("race")
    assert job is not None and job.status == "done"
    assert job.state["winner"] == results.index(True)


async def test_deliver_versus_cancel_race(store: Store) -> None:
    await store.create_job(_job("dc", status="running"))
    deliver, cancel = await asyncio.gather(
        store.transition_job("dc", {"running"}, "delivering"),
        store.transition_job("dc", {"pending", "running"}, "cancelled"),
    )
    assert deliver != cancel


async def test_unfinished_jobs_survive_reopen(backend: BackendUnderTest, box: SecretBox) -> None:
    s = await backend.open(box)
    statuses = ["pending", "running", "delivering", "done", "failed", "cancelled"]
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for i, st in enumerate(statuses):
        await s.create_job(_job(f"img-{st}", status=st, created_at=t0 + timedelta(seconds=i)))
    await s.create_job(_job("vid-1", kind="video", status="running", state={"task": "v1"}))
    await s.update_job("img-running", state={"task_id": "igen_9"}, next_run_at=123.5)
    await s.close()

    s = await backend.open(box)
    try:
        unfinished = await s.unfinished_jobs()
        assert [j.id for j in unfinished] == [
            "img-pending",
            "img-running",
            "img-delivering",
            "vid-1",
        ]
        running = unfinished[1]
        assert running.state == {"task_id": "igen_9"} and running.next_run_at == 123.5
        assert [j.id for j in await s.unfinished_jobs({"video"})] == ["vid-1"]
        assert await s.unfinished_jobs(set()) == []
    finally:
        await s.close()


# -- audit ------------------------------------------------------------------------------


async def test_audit_round_trip(store: Store) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    a = AuditEntry(
        owner=ALICE, command="/alltoken-chat", outcome="ok", request_id="r1", created_at=t0
    )
    b = AuditEntry(
        owner=BOB,
        command="/alltoken-image",
        outcome="failed",
        detail="insufficient_balance",
        created_at=t0 + timedelta(seconds=1),
    )
    await store.audit(a)
    await store.audit(b)
    assert await store.list_audit(ALICE) == [a]
    assert await store.list_audit(BOB) == [b]
    assert await store.list_audit(None) == [b, a]
    assert await store.list_audit(None, limit=1) == [b]
    assert await store.list_audit(ALICE_ELSEWHERE) == []


async def test_audit_redacts_key_shaped_strings(store: Store, backend: BackendUnderTest) -> None:
    prov = "sk-prov-" + "0123456789abcdef" * 2
    await store.audit(
        AuditEntry(
            owner=ALICE,
            command=f"/alltoken-key set {SECRET}",
            outcome="ok",
            detail=f"pasted {prov} in #general",
        )
    )
    (entry,) = await store.list_audit(ALICE)
    assert SECRET not in entry.command and entry.command.startswith("/alltoken-key set sk-at-")
    assert entry.detail is not None
    assert prov not in entry.detail and prov[8:] not in entry.detail
    stored = repr(await backend.raw("SELECT command, detail FROM audit"))
    assert SECRET not in stored and prov[8:] not in stored
    if isinstance(backend.where, Path):
        on_disk = _disk_bytes(backend.where)
        assert SECRET.encode() not in on_disk and prov.encode() not in on_disk


async def test_audit_redacts_without_key_shapes_module(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_module, "_shared_redact", lambda: None)
    await store.audit(
        AuditEntry(
            owner=ALICE, command="/openmarlin-key claw_wsk_abc", outcome="ok", detail="Sk-At-x1"
        )
    )
    (entry,) = await store.list_audit(ALICE)
    assert "claw_wsk_abc" not in entry.command and "x1" not in (entry.detail or "")


@pytest.mark.parametrize(
    "shaped",
    [
        "SK-AT-Zx9deadbeef",
        "Claw_Wsk_deadbeef9",
        # Case folding beyond ASCII: the regexes match "ſ" for "s", so the fast skip for text
        # without a key hint must not apply here.
        "\u017fk-at-deadbeef9",
    ],
)
async def test_audit_redacts_any_spelling_the_patterns_match(store: Store, shaped: str) -> None:
    await store.audit(
        AuditEntry(owner=ALICE, command="/alltoken-chat", outcome="ok", detail=shaped)
    )
    (entry,) = await store.list_audit(ALICE)
    assert entry.detail is not None and "deadbeef" not in entry.detail


async def test_audit_survives_a_broken_key_shapes(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(text: str) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr(audit_module, "_shared_redact", lambda: boom)
    await store.audit(AuditEntry(owner=ALICE, command=f"x {SECRET}", outcome="ok"))
    (entry,) = await store.list_audit(ALICE)
    assert SECRET not in entry.command


# -- concurrency --------------------------------------------------------------------------


async def test_many_concurrent_coroutines(store: Store) -> None:
    owners = [Owner(platform="discord", workspace="G", user=f"u{i}") for i in range(25)]

    async def work(o: Owner) -> None:
        await store.put_credential(o, "alltoken", f"sk-at-key-for-{o.user}-0000")
        await store.record_usage(UsageRecord(owner=o, service="alltoken", command="chat"))
        await store.create_job(_job(f"job-{o.user}", owner=o))
        assert await store.get_credential(o, "alltoken") == f"sk-at-key-for-{o.user}-0000"

    await asyncio.gather(*(work(o) for o in owners))
    for o in owners:
        assert len(await store.list_usage(o)) == 1
        assert [j.id for j in await store.jobs_for(o)] == [f"job-{o.user}"]
    assert len(await store.unfinished_jobs()) == 25


async def test_batched_appends_are_read_back_and_survive_close(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    store = await backend.open(box)
    await asyncio.gather(
        *(
            store.record_usage(
                UsageRecord(owner=ALICE, service="alltoken", command="chat", prompt_tokens=i)
            )
            for i in range(300)
        )
    )
    await asyncio.gather(
        *(store.audit(AuditEntry(owner=ALICE, command=f"c{i}", outcome="ok")) for i in range(50))
    )
    assert len(await store.list_usage(ALICE, limit=1000)) == 300  # reads see queued appends
    await store.set_last_call(ALICE, "conv", LastCall(command="chat", model="m1"))
    await store.set_last_call(ALICE, "conv", LastCall(command="chat", model="m2"))
    last = await store.get_last_call(ALICE, "conv")
    assert last is not None and last.model == "m2"  # upserts keep their order
    await store.record_usage(UsageRecord(owner=ALICE, service="alltoken", command="late"))
    await store.close()  # flushes what is still queued
    reopened = await backend.open(box)
    try:
        assert len(await reopened.list_usage(ALICE, limit=1000)) == 301
        assert len(await reopened.list_audit(ALICE, limit=100)) == 50
    finally:
        await reopened.close()


async def test_credential_cache_follows_put_and_delete(store: Store) -> None:
    assert await store.get_credential(ALICE, "alltoken") is None
    await store.put_credential(ALICE, "alltoken", "sk-at-first-000000000000")
    assert await store.get_credential(ALICE, "alltoken") == "sk-at-first-000000000000"
    await store.put_credential(ALICE, "alltoken", "sk-at-second-00000000000")
    assert await store.get_credential(ALICE, "alltoken") == "sk-at-second-00000000000"
    await store.delete_credential(ALICE, "alltoken")
    assert await store.get_credential(ALICE, "alltoken") is None
