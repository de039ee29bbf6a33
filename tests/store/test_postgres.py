"""What only the PostgreSQL backend has: URLs, an unreachable server, several processes at once."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.core.settings import Settings
from bot.store import (
    JobRecord,
    Owner,
    SecretBox,
    SecretBoxError,
    Store,
    StoreError,
    UsageRecord,
    db,
    parse_location,
    postgres,
)
from bot.store.location import redact_url, server_name
from tests.store.conftest import BackendUnderTest

ALICE = Owner(platform="slack", workspace="T1", user="U_ALICE")


def test_locations_parse_like_sqlalchemy_urls() -> None:
    assert parse_location("sqlite:///data/x.db").sqlite_path == Path("data/x.db")
    assert parse_location("sqlite:////var/lib/x.db").sqlite_path == Path("/var/lib/x.db")
    assert parse_location(Path("a.db")).sqlite_path == Path("a.db")
    url = "postgresql://bot:s3cret@db.internal:6543/tokenbot"
    assert parse_location(url).postgres_url == url
    assert parse_location("postgres://u@h/d").postgres_url == "postgres://u@h/d"
    for bad in ("mysql://u@h/d", "sqlite://x.db", "sqlite:///", "postgresql://u@h:port/d"):
        with pytest.raises(ValueError):
            parse_location(bad)


def test_urls_are_shown_without_passwords() -> None:
    url = "postgresql://bot:s3cret@db.internal:6543/tokenbot?sslmode=require&password=p2"
    shown = redact_url(url)
    assert "s3cret" not in shown and "p2" not in shown
    assert shown == "postgresql://bot@db.internal:6543/tokenbot"
    assert server_name(url) == "postgresql://db.internal:6543/tokenbot"
    socket_url = "postgresql://postgres:@/t?host=/tmp/pg"
    assert redact_url(socket_url) == "postgresql://postgres@/t?host=/tmp/pg"
    assert server_name(socket_url) == "postgresql:///tmp/pg:5432/t"


def test_the_setting_defaults_to_the_data_dirs_sqlite_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url is None
    assert parse_location(settings.store_url).sqlite_path == tmp_path / "tokenbot.db"
    assert Settings(data_dir=tmp_path, database_url=" ").database_url is None
    with pytest.raises(ValidationError) as info:
        Settings(database_url="mysql://root:hunter2@localhost/db")
    # What `tokenbot` prints of it (bot/cli.py: the messages) names the URL without its password.
    [message] = [str(e["msg"]) for e in info.value.errors()]
    assert "must start with sqlite:/// (a file) or postgresql://" in message
    assert "mysql://root@localhost/db" in message and "hunter2" not in message
    pg = Settings(database_url="postgresql://bot:s3cret@db/tokenbot")
    assert "s3cret" not in repr(pg) and pg.store_url == "postgresql://bot:s3cret@db/tokenbot"


def test_placeholders_are_numbered_outside_literals() -> None:
    sql = "SELECT '?' AS q, a FROM t WHERE b = ? AND c IN (?, ?)"
    assert postgres.to_numbered(sql) == "SELECT '?' AS q, a FROM t WHERE b = $1 AND c IN ($2, $3)"


def test_both_backends_know_the_same_schema_versions() -> None:
    # Version N means the same tables on both: a new migration is appended to both lists.
    assert len(postgres.MIGRATIONS) == len(db.MIGRATIONS) == postgres.SCHEMA_VERSION


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    url = f"postgresql://bot:s3cret@127.0.0.1:{_closed_port()}/tokenbot"
    with pytest.raises(StoreError) as info:
        await Store.open(url, SecretBox.generate())
    message = str(info.value)
    assert "cannot connect to PostgreSQL at postgresql://bot@127.0.0.1:" in message
    assert "TOKENBOT_DATABASE_URL" in message and "s3cret" not in message
    assert "\n" not in message


async def test_a_missing_database_says_to_create_it(postgres_url: str) -> None:
    url = postgres_url.replace("/tokenbot_test_", "/no_such_db_", 1)
    with pytest.raises(StoreError, match="create that database first"):
        await Store.open(url, SecretBox.generate())


async def test_replicas_share_one_store(pg_backend: BackendUnderTest, tmp_path: Path) -> None:
    box = SecretBox.generate()
    # Two processes starting together on a new database: one migration, one identity.
    a, b = await asyncio.gather(
        Store.open(pg_backend.where, box, data_dir=tmp_path / "a"),
        Store.open(pg_backend.where, box, data_dir=tmp_path / "b"),
    )
    try:
        assert a.store_id == b.store_id and a.backend == "postgresql"
        versions = await pg_backend.raw("SELECT version FROM schema_version ORDER BY version")
        assert [v for (v,) in versions] == list(range(1, postgres.SCHEMA_VERSION + 1))
        assert a.path is None and "tokenbot_test_" in a.location

        await a.put_credential(ALICE, "alltoken", "sk-at-set-on-replica-a-0000")
        assert await b.get_credential(ALICE, "alltoken") == "sk-at-set-on-replica-a-0000"
        await a.put_credential(ALICE, "alltoken", "sk-at-changed-on-replica-a-1")
        b.forget_cached_credentials(ALICE, "alltoken")  # what a change notice will call
        assert await b.get_credential(ALICE, "alltoken") == "sk-at-changed-on-replica-a-1"

        job = JobRecord(
            id="race", kind="image", owner=ALICE, destination={"c": "1"}, status="running"
        )
        await a.create_job(job)
        with pytest.raises(ValueError, match="already exists"):
            await b.create_job(job)
        # A compare-and-set across processes has exactly one winner.
        results = await asyncio.gather(
            *(
                store.transition_job("race", {"running"}, "done", state={"winner": i})
                for i, store in enumerate([a, b] * 10)
            )
        )
        assert results.count(True) == 1
        done = await b.get_job("race")
        assert done is not None and done.state["winner"] == results.index(True)

        await a.record_usage(UsageRecord(owner=ALICE, service="alltoken", command="chat"))
        assert len(await a.list_usage(ALICE)) == 1  # a's read flushes a's queued row
        assert len(await b.list_usage(ALICE)) == 1
    finally:
        await a.close()
        await b.close()


async def test_a_replica_with_another_master_key_is_refused(pg_backend: BackendUnderTest) -> None:
    first = SecretBox.generate()
    async with await Store.open(pg_backend.where, first) as s:
        await s.put_credential(ALICE, "alltoken", "sk-at-stored-with-the-first-key")
    with pytest.raises(SecretBoxError, match="master key changed"):
        await Store.open(pg_backend.where, SecretBox.generate())


def test_no_test_server_is_a_failure_naming_every_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.store import postgres_server

    def _start_pgserver(base: Path) -> postgres_server.PostgresForTests:
        raise RuntimeError("useradd: cannot lock /etc/passwd")

    def _start_path_binaries(base: Path) -> postgres_server.PostgresForTests:
        raise FileNotFoundError("no pg_ctl on PATH")

    monkeypatch.delenv(postgres_server.EXTERNAL_URL_VARIABLE, raising=False)
    monkeypatch.setattr(postgres_server, "_start_pgserver", _start_pgserver)
    monkeypatch.setattr(postgres_server, "_start_path_binaries", _start_path_binaries)
    with pytest.raises(postgres_server.PostgresUnavailable) as info:
        postgres_server.start_test_postgres()
    message = str(info.value)
    assert "pgserver: RuntimeError: useradd: cannot lock /etc/passwd" in message
    assert "path_binaries: FileNotFoundError: no pg_ctl on PATH" in message
    assert postgres_server.EXTERNAL_URL_VARIABLE in message
