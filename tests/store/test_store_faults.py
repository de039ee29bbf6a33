"""Operator faults in the store: lost or swapped databases, a damaged WAL, failing writes, bad
rows. Those with a `backend` argument run on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.metrics import Metrics
from bot.store import (
    MARKER_NAME,
    CredentialUnreadableError,
    JobRecord,
    Owner,
    SecretBox,
    SecretBoxError,
    Store,
    StoreCorruptError,
    StoreError,
    StoreMismatchError,
    StoreMissingError,
    UsageRecord,
    postgres,
)
from bot.store.db import MIGRATIONS
from tests.store.conftest import BackendUnderTest

ALICE = Owner(platform="slack", workspace="T1", user="U_ALICE")
SECRET = "sk-at-StoreFaultsSecret000000001"


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


def _marker(db_path: Path) -> dict[str, str]:
    return dict(json.loads((db_path.parent / MARKER_NAME).read_text()))


async def _new_store(db_path: Path, box: SecretBox) -> str:
    s = await Store.open(db_path, box)
    await s.put_credential(ALICE, "alltoken", SECRET)
    store_id = s.store_id
    await s.close()
    return store_id


# -- identity and marker ----------------------------------------------------------------------


async def test_new_data_dir_gets_a_store_and_a_marker(db_path: Path, box: SecretBox) -> None:
    store_id = await _new_store(db_path, box)
    assert len(store_id) == 32
    marker = _marker(db_path)
    assert marker["store_id"] == store_id and marker["database"] == "tokenbot.db"
    # Reopening the same store is quiet and keeps its identity.
    s = await Store.open(db_path, box)
    assert s.store_id == store_id
    await s.close()


@pytest.mark.parametrize("how", ["deleted", "emptied"])
async def test_lost_database_is_refused_not_recreated(
    db_path: Path, box: SecretBox, how: str
) -> None:
    store_id = await _new_store(db_path, box)
    if how == "deleted":
        db_path.unlink()
    else:
        db_path.write_bytes(b"")
    with pytest.raises(StoreMissingError) as info:
        await Store.open(db_path, box)
    message = str(info.value)
    assert str(db_path) in message and store_id in message
    assert "TOKENBOT_ALLOW_NEW_STORE=1" in message and "--new-store" in message
    assert not db_path.exists() or db_path.stat().st_size == 0  # nothing was created


async def test_new_store_accepted_on_purpose(db_path: Path, box: SecretBox) -> None:
    old_id = await _new_store(db_path, box)
    db_path.unlink()
    s = await Store.open(db_path, box, allow_new_store=True)
    try:
        assert s.store_id != old_id
        assert await s.get_credential(ALICE, "alltoken") is None
    finally:
        await s.close()
    assert _marker(db_path)["store_id"] == s.store_id
    # From now on the new store is the expected one.
    reopened = await Store.open(db_path, box)
    await reopened.close()


async def test_swapped_database_is_refused(tmp_path: Path, box: SecretBox) -> None:
    here = tmp_path / "here" / "tokenbot.db"
    other = tmp_path / "other" / "tokenbot.db"
    await _new_store(here, box)
    other_id = await _new_store(other, box)
    here.unlink()
    shutil.copyfile(other, here)
    with pytest.raises(StoreMismatchError, match=other_id):
        await Store.open(here, box)
    s = await Store.open(here, box, allow_new_store=True)  # adopting it is possible
    assert s.store_id == other_id
    await s.close()


def test_key_fingerprint_tells_keys_apart_and_hides_them() -> None:
    key = b"x" * 32
    import base64

    fernet_key = base64.urlsafe_b64encode(key)
    a = SecretBox(fernet_key)
    assert a.fingerprint() == SecretBox(fernet_key).fingerprint()
    assert a.fingerprint() != SecretBox.generate().fingerprint()
    assert fernet_key.decode() not in a.fingerprint() and key.hex() not in a.fingerprint()


async def test_changed_master_key_with_stored_keys_is_refused(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await backend.open(box) as s:
        await s.put_credential(ALICE, "alltoken", SECRET)
        location = s.location
    with pytest.raises(SecretBoxError) as info:
        await backend.open(SecretBox.generate())
    assert "master key changed" in str(info.value) and location in str(info.value)
    [row] = await backend.raw("SELECT value FROM meta WHERE key = 'master_key_fingerprint'")
    assert bytes(row[0]).decode() == box.fingerprint()  # the refused key was not recorded


async def test_missing_key_file_regenerated_is_named_in_the_refusal(tmp_path: Path) -> None:
    data = tmp_path / "data"
    box = SecretBox.from_settings(None, data)
    await _new_store(data / "tokenbot.db", box)
    (data / "master.key").unlink()
    fresh = SecretBox.from_settings(None, data)
    assert fresh.generated
    with pytest.raises(SecretBoxError, match="was missing, so a new master key was just generated"):
        await Store.open(data / "tokenbot.db", fresh)


# -- damaged files ----------------------------------------------------------------------------


async def _store_with_unchecked_wal(db_path: Path, box: SecretBox, copies: list[Path]) -> None:
    """Commit 20 rows that live only in the WAL, then copy the files as a crash would leave them."""
    await _new_store(db_path, box)
    raw = sqlite3.connect(db_path, isolation_level=None)
    try:
        raw.execute("PRAGMA wal_autocheckpoint = 0")
        for i in range(20):
            raw.execute(
                "INSERT INTO audit (platform, workspace, user, command, outcome, created_at)"
                " VALUES ('slack', 'T1', 'U_ALICE', ?, 'ok', '2026-01-01T00:00:00+00:00')",
                (f"c{i}" + "x" * 3000,),
            )
        for target in copies:
            target.mkdir(parents=True)
            for name in ("tokenbot.db", "tokenbot.db-wal", MARKER_NAME):
                shutil.copyfile(db_path.parent / name, target / name)
    finally:
        raw.close()


async def test_damaged_wal_is_refused_instead_of_losing_commits(
    tmp_path: Path, box: SecretBox
) -> None:
    intact, damaged = tmp_path / "intact", tmp_path / "damaged"
    await _store_with_unchecked_wal(tmp_path / "orig" / "tokenbot.db", box, [intact, damaged])
    wal = damaged / "tokenbot.db-wal"
    data = bytearray(wal.read_bytes())
    data[32 + 2 * (24 + 4096) + 500] ^= 0xFF  # one byte in the page of frame 3
    wal.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError) as info:
        await Store.open(damaged / "tokenbot.db", box)
    assert "tokenbot.db-wal" in str(info.value) and "committed" in str(info.value)
    # The intact copy of the same crash opens with every row.
    s = await Store.open(intact / "tokenbot.db", box)
    try:
        assert len(await s.list_audit(ALICE, limit=100)) == 20
    finally:
        await s.close()


async def test_garbage_database_is_refused_and_left_alone(db_path: Path, box: SecretBox) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = b"this is not a database, but someone's only copy of it" * 200
    db_path.write_bytes(garbage)
    with pytest.raises(StoreError, match="not a readable tokenbot database"):
        await Store.open(db_path, box)
    assert db_path.read_bytes() == garbage


async def test_failed_integrity_check_is_refused(db_path: Path, box: SecretBox) -> None:
    s = await Store.open(db_path, box)
    for i in range(300):
        await s.record_usage(UsageRecord(owner=ALICE, service="alltoken", command=f"c{i}"))
    await s.close()
    with sqlite3.connect(db_path) as raw:
        root = raw.execute("SELECT rootpage FROM sqlite_master WHERE name = 'usage_by_owner'")
        page = root.fetchone()[0]
    data = bytearray(db_path.read_bytes())
    start = (page - 1) * 4096
    data[start + 100 : start + 4000] = b"\x00" * 3900  # wipe the index page's cells
    db_path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="damaged"):
        await Store.open(db_path, box)


# -- failing writes ---------------------------------------------------------------------------


async def _fill_disk(store: Store, backend: BackendUnderTest) -> int:
    """Make every write of a usage row fail, as a full disk does; the rows queued by then.

    SQLite: its own page limit produces the real SQLITE_FULL, and rows are appended until the
    free space left in the last pages is used up too. PostgreSQL: the server refuses the
    rows (a check constraint no row meets, added without checking the rows already there).
    """
    if backend.is_sqlite:
        conn = store._db.conn  # type: ignore[attr-defined]
        async with conn.execute("PRAGMA page_count") as cur:
            row = await cur.fetchone()
        assert row is not None
        await conn.execute(f"PRAGMA max_page_count = {row[0]}")
    else:
        await backend.raw(
            "ALTER TABLE usage ADD CONSTRAINT disk_full CHECK (command = '') NOT VALID"
        )
    for i in range(1000):
        await store.record_usage(UsageRecord(owner=ALICE, service="alltoken", command=f"f{i}"))
        await store._db.flush()
        if store.health().degraded:
            return store.health().queued_rows
    raise AssertionError("the store never filled up")


async def _free_disk(store: Store, backend: BackendUnderTest) -> None:
    if backend.is_sqlite:
        await store._db.conn.execute("PRAGMA max_page_count = 1073741823")  # type: ignore[attr-defined]
    else:
        await backend.raw("ALTER TABLE usage DROP CONSTRAINT disk_full")


def _usage(i: int) -> UsageRecord:
    return UsageRecord(owner=ALICE, service="alltoken", command=f"c{i}")


async def test_failing_appends_are_kept_retried_and_counted(
    store: Store, backend: BackendUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    store._db.retry_interval_s = 3600  # only flushes retry in this test
    with caplog.at_level(logging.ERROR, logger="bot.store.db"):
        filler = await _fill_disk(store, backend)
        for i in range(40):
            await store.record_usage(_usage(i))
            await store._db.flush()
    health = store.health()
    assert health.degraded and health.queued_rows == filler + 40 and health.dropped_rows == 0
    assert ("full" if backend.is_sqlite else "disk_full") in (health.error or "")
    assert not await store.writes_ok()
    failing = [r for r in caplog.records if "are failing" in r.getMessage()]
    assert len(failing) == 1  # once per episode, not per row or retry

    store.max_queued_rows = 50
    for i in range(40, 70):
        await store.record_usage(_usage(i))
    health = store.health()
    assert health.queued_rows == 50 and health.dropped_rows == filler + 20

    metrics = Metrics()
    metrics.track_store(store.health)
    text = metrics.exposition().decode()
    assert "tokenbot_store_queued_rows 50.0" in text
    assert f"tokenbot_store_dropped_rows {float(filler + 20)}" in text

    await _free_disk(store, backend)
    rows = await store.list_usage(ALICE, limit=1000)  # reads flush: the retry happens here
    kept = sorted(int(r.command[1:]) for r in rows if r.command.startswith("c"))
    assert kept == list(range(20, 70))  # the oldest were dropped, the rest written
    assert store.health() == type(health)(degraded=False, queued_rows=0, dropped_rows=filler + 20)
    assert await store.writes_ok()


async def test_failing_store_retries_on_its_own(store: Store, backend: BackendUnderTest) -> None:
    store._db.retry_interval_s = 0.05
    queued = await _fill_disk(store, backend)
    assert queued > 0
    await _free_disk(store, backend)
    for _ in range(200):
        if not store.health().degraded:
            break
        await asyncio.sleep(0.05)
    assert store.health().queued_rows == 0 and not store.health().degraded


# -- credentials ------------------------------------------------------------------------------


async def test_undecryptable_credential_is_reported_as_such(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await backend.open(box) as s:
        await s.put_credential(ALICE, "alltoken", SECRET)
    await backend.raw(
        "UPDATE credentials SET ciphertext = ? WHERE service = 'alltoken'",
        (SecretBox.generate().encrypt("someone else's"),),
    )
    s = await backend.open(box)
    try:
        with pytest.raises(CredentialUnreadableError) as info:
            await s.get_credential(ALICE, "alltoken")
        assert info.value.service == "alltoken" and SECRET not in str(info.value)
        found = await s.credential_info(ALICE, "alltoken")
        assert found is not None and not found.readable
        assert [c.readable for c in await s.list_credentials(ALICE)] == [False]
        await s.put_credential(ALICE, "alltoken", SECRET)  # setting it again repairs it
        assert await s.get_credential(ALICE, "alltoken") == SECRET
        again = await s.credential_info(ALICE, "alltoken")
        assert again is not None and again.readable
    finally:
        await s.close()


# -- jobs -------------------------------------------------------------------------------------


def _job(job_id: str, **kw: object) -> JobRecord:
    fields: dict[str, object] = {
        "id": job_id,
        "kind": "image",
        "owner": ALICE,
        "destination": {"platform": "slack", "workspace": "T1", "channel": "C1", "user": "U1"},
        "status": "running",
    }
    fields.update(kw)
    return JobRecord.model_validate(fields)


async def test_undecodable_job_rows_are_reported_and_quarantined(
    store: Store, backend: BackendUnderTest
) -> None:
    for job_id in ("good", "bad-state", "bad-dest"):
        await store.create_job(_job(job_id))
    await backend.raw("UPDATE jobs SET state = '{not json' WHERE id = 'bad-state'")
    await backend.raw("UPDATE jobs SET destination = '[1, 2' WHERE id = 'bad-dest'")

    jobs, bad = await store.load_unfinished_jobs()
    assert [j.id for j in jobs] == ["good"]
    by_id = {b.id: b for b in bad}
    assert set(by_id) == {"bad-state", "bad-dest"}
    assert by_id["bad-state"].destination is not None and by_id["bad-state"].owner == ALICE
    assert by_id["bad-dest"].destination is None
    assert "JSONDecodeError" in by_id["bad-state"].reason
    # The other readers skip such rows instead of failing for everyone.
    assert [j.id for j in await store.unfinished_jobs()] == ["good"]
    assert [j.id for j in await store.jobs_for(ALICE)] == ["good"]
    assert await store.get_job("bad-state") is None

    assert await store.quarantine_job("bad-state", "unreadable state")
    assert not await store.quarantine_job("bad-state", "twice")  # no longer unfinished
    [row] = await backend.raw("SELECT status, error, state FROM jobs WHERE id = 'bad-state'")
    assert row == ("quarantined", "unreadable state", "{not json")  # data kept as it was
    _, bad = await store.load_unfinished_jobs()
    assert [b.id for b in bad] == ["bad-dest"]


async def _version_1_database(backend: BackendUnderTest) -> None:
    """A database as the first schema left it (on SQLite: what tokenbot 0.1 wrote)."""
    migrations = MIGRATIONS if backend.is_sqlite else postgres.MIGRATIONS
    if isinstance(backend.where, Path):
        backend.where.parent.mkdir(parents=True)
    await backend.raw("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
    for sql in migrations[0]:
        await backend.raw(sql)
    await backend.raw("INSERT INTO schema_version VALUES (1, '2026-01-01T00:00:00+00:00')")
    await backend.raw(
        'INSERT INTO jobs (id, kind, platform, workspace, "user", destination, state, status,'
        " created_at, updated_at) VALUES ('old', 'image', 'slack', 'T1', 'U_ALICE', '{}',"
        " '{\"prompt\": \"p\"}', 'running', '2026-01-01T00:00:00+00:00',"
        " '2026-01-01T00:00:00+00:00')"
    )


async def test_version_1_database_gains_the_quarantined_status(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    await _version_1_database(backend)
    s = await backend.open(box)
    try:
        assert await s.schema_version() == len(MIGRATIONS)
        [old] = await s.unfinished_jobs()
        assert old.state == {"prompt": "p"}
        assert await s.quarantine_job("old", "test")
        assert await s.unfinished_jobs() == []
    finally:
        await s.close()


# -- a PostgreSQL store's identity (a server has no file to find missing) ---------------------


async def test_emptied_server_database_is_refused(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await pg_backend.open(box) as s:
        await s.put_credential(ALICE, "alltoken", SECRET)
        store_id = s.store_id
    marker = _marker(pg_backend.data_dir / "tokenbot.db")
    assert marker["store_id"] == store_id and marker["database"].startswith("postgresql://")
    assert "tokenbot_test_" in marker["database"] and "postgres@" not in marker["database"]
    await pg_backend.raw("DROP SCHEMA public CASCADE")
    await pg_backend.raw("CREATE SCHEMA public")
    with pytest.raises(StoreMissingError) as info:
        await pg_backend.open(box)
    message = str(info.value)
    assert store_id in message and "holds no tokenbot store" in message
    assert "TOKENBOT_ALLOW_NEW_STORE=1" in message
    async with await pg_backend.open(box, allow_new_store=True) as s:
        assert s.store_id != store_id
    assert _marker(pg_backend.data_dir / "tokenbot.db")["store_id"] == s.store_id
    await (await pg_backend.open(box)).close()  # the new store is the expected one from now on


async def test_swapped_server_database_is_refused(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await pg_backend.open(box) as s:
        mine = s.store_id
    other = "0123456789abcdef0123456789abcdef"
    await pg_backend.raw("UPDATE meta SET value = ? WHERE key = 'store_id'", (other.encode(),))
    with pytest.raises(StoreMismatchError, match=other) as info:
        await pg_backend.open(box)
    assert mine in str(info.value)
    async with await pg_backend.open(box, allow_new_store=True) as s:
        assert s.store_id == other
