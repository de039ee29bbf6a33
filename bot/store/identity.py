"""Store identity: notice a lost or swapped database instead of silently starting empty.

Each store gets an id (a row in `meta`) when it is created, and the data dir gets a marker file
`store.id` naming it, next to `master.key`. If the marker is there but the database is missing,
empty or another store, tokenbot refuses to start until the operator restores the file or
accepts a new store on purpose (TOKENBOT_ALLOW_NEW_STORE=1 / `--new-store`). For PostgreSQL
the marker names the server and database (`postgresql://host:port/db`, never a password).
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from bot.store.backend import StoreBackend, StoreError
from bot.store.db import os_problem
from bot.store.models import iso, utcnow

MARKER_NAME = "store.id"
_STORE_ID_KEY = "store_id"
_CREATED_KEY = "store_created_at"
ACCEPT_NEW_HINT = (
    "start once with TOKENBOT_ALLOW_NEW_STORE=1 (or `tokenbot run --new-store`, "
    "`tokenbot console --new-store`)"
)


class StoreMissingError(StoreError):
    """The data dir had a store, and its database file is gone or empty."""


class StoreMismatchError(StoreError):
    """The database in the data dir is not the store the marker file names."""


@dataclass(frozen=True)
class Marker:
    """What `store.id` records; an unreadable marker still says that a store existed."""

    path: Path
    store_id: str
    database: str
    created_at: str

    def covers(self, name: str) -> bool:
        """Whether this marker speaks for the database `name` (one per data dir, first wins)."""
        return self.database in ("", name)


def read_marker(data_dir: Path) -> Marker | None:
    """The data dir's marker, or None when no store was ever created there."""
    path = data_dir / MARKER_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(os_problem(exc, path)) from exc
    try:
        obj = json.loads(text)
        return Marker(path, str(obj["store_id"]), str(obj["database"]), str(obj["created_at"]))
    except (ValueError, KeyError, TypeError):
        return Marker(path, "", "", "")


def refuse_if_missing(db_path: Path, marker: Marker | None) -> None:
    """StoreMissingError when the marker says a store existed at `db_path` and it is gone."""
    if marker is None or not marker.covers(db_path.name) or not _blank(db_path):
        return
    state = "missing" if not db_path.exists() else "empty (0 bytes)"
    which = f"store {marker.store_id}" if marker.store_id else "a store"
    when = f" on {marker.created_at[:10]}" if marker.created_at else ""
    raise StoreMissingError(
        f"{db_path} is {state}, but {marker.path} records that {which} was created there{when}: "
        f"every user's stored keys, usage and jobs were in it. Restore {db_path.name} from a "
        f"backup, or, to begin again with an empty store on purpose, {ACCEPT_NEW_HINT}"
    )


async def _stored_id(db: StoreBackend) -> str | None:
    async with db.read() as conn:
        row = await conn.fetchone("SELECT value FROM meta WHERE key = ?", (_STORE_ID_KEY,))
    return bytes(row["value"]).decode("utf-8", "replace") if row is not None else None


async def ensure_identity(db: StoreBackend, marker: Marker | None, *, allow_new: bool) -> str:
    """The store's id (created for a new or older store); StoreMismatchError for a swapped file.

    On a server database (no file to find missing beforehand) a marker naming it and no
    identity in it means the store is gone: StoreMissingError.
    """
    store_id = await _stored_id(db)
    if (
        marker is not None
        and marker.covers(db.marker_name)
        and marker.store_id != store_id
        and not allow_new
    ):
        if store_id is None and db.dialect.name != "sqlite":
            raise StoreMissingError(
                f"{db.location} holds no tokenbot store, but {marker.path} records that store "
                f"{marker.store_id or '(unreadable)'} lived there: every user's stored keys, "
                "usage and jobs were in it. Restore that database from a backup, or, to begin "
                f"again with an empty store on purpose, {ACCEPT_NEW_HINT}"
            )
        this = f"store {store_id}" if store_id else "a store without an identity"
        raise StoreMismatchError(
            f"{db.location} is {this}, but {marker.path} records store "
            f"{marker.store_id or '(unreadable)'}: this is not the database that was used here "
            f"(restored from the wrong backup, or replaced). Put the right {_short(db)} back, "
            f"or, to use this one from now on, {ACCEPT_NEW_HINT}"
        )
    if store_id is not None:
        return store_id
    async with db.write() as conn:
        await conn.lock_store()
        # DO NOTHING: when replicas start together on one new database, the first id stays.
        await conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
            [
                (_STORE_ID_KEY, uuid.uuid4().hex.encode("utf-8")),
                (_CREATED_KEY, iso(utcnow()).encode("utf-8")),
            ],
        )
    # Into the main file now, so the identity does not depend on the WAL surviving.
    await db.checkpoint()
    created = await _stored_id(db)
    assert created is not None  # just written
    return created


def _short(db: StoreBackend) -> str:
    # How the operator would name what to put back: the file name, or the database URL.
    return db.marker_name if db.dialect.name == "sqlite" else "database"


def write_marker(data_dir: Path, database: str, store_id: str, marker: Marker | None) -> None:
    """Record in `data_dir` that `store_id` lives in `database` (atomically, owner-only)."""
    if marker is not None and (not marker.covers(database) or marker.store_id == store_id):
        return
    path = data_dir / MARKER_NAME
    tmp = path.with_name(path.name + ".tmp")
    body = json.dumps(
        {"store_id": store_id, "database": database, "created_at": iso(utcnow())}, indent=1
    )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)  # a server store's data dir may be new
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(os_problem(exc, path)) from exc


def _blank(db_path: Path) -> bool:
    # A zero-length main file with a non-empty WAL can still hold a store: SQLite reads it.
    wal = Path(f"{db_path}-wal")
    main_blank = not db_path.exists() or db_path.stat().st_size == 0
    return main_blank and (not wal.exists() or wal.stat().st_size == 0)
