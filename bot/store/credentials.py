"""Per-user credentials, encrypted with the SecretBox before they touch the database."""

from __future__ import annotations

import json
import logging

import aiosqlite

from bot.store.db import Database
from bot.store.models import CredentialInfo, Owner, from_iso, iso, utcnow
from bot.store.secret_box import SecretBox, SecretBoxError

log = logging.getLogger(__name__)

# Secrets shorter than this get no visible tail: four characters of a short secret is too much.
_MIN_CHARS_FOR_TAIL = 12
# A canary encrypted under the master key at first open; if it stops decrypting, the master
# key changed and every stored credential is unreadable, so we say so at startup.
_CANARY_KEY = "master_key_canary"
_CANARY_TEXT = "tokenbot"


def fingerprint(secret: str) -> str:
    """A safe hint for which secret is stored: "…" and the last 4 characters."""
    return "…" + (secret[-4:] if len(secret) >= _MIN_CHARS_FOR_TAIL else "")


class Credentials:
    """Repository for the `credentials` table."""

    def __init__(self, db: Database, box: SecretBox) -> None:
        self._db = db
        self._box = box
        # Every command reads its caller's key; this process is the only writer (SQLite),
        # so a cache kept in step by put/delete saves a database round trip per command.
        self._cache: dict[tuple[str, str, str, str], str | None] = {}

    async def check_master_key(self) -> None:
        """Seal a canary on first use; SecretBoxError if the master key changed since.

        A changed key with no credentials stored loses nothing, so the canary is simply
        re-sealed with the new key in that case.
        """
        async with self._db.write() as conn:
            async with conn.execute("SELECT value FROM meta WHERE key = ?", (_CANARY_KEY,)) as cur:
                row = await cur.fetchone()
            if row is not None:
                try:
                    self._box.decrypt(bytes(row["value"]))
                    return
                except SecretBoxError:
                    async with conn.execute("SELECT COUNT(*) FROM credentials") as cur:
                        count = await cur.fetchone()
                    if count is not None and count[0] > 0:
                        raise
                    log.warning("master key changed but no credentials were stored; continuing")
            await conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (_CANARY_KEY, self._box.encrypt(_CANARY_TEXT)),
            )

    async def put(
        self, owner: Owner, service: str, secret: str, *, meta: dict[str, str] | None = None
    ) -> CredentialInfo:
        """Store (or replace) `owner`'s secret for `service`; created_at survives replacement."""
        if not service:
            raise ValueError("service must not be empty")
        if not secret:
            raise ValueError("secret must not be empty")
        now = iso(utcnow())
        async with self._db.write() as conn:
            await conn.execute(
                "INSERT INTO credentials (platform, workspace, user, service, ciphertext,"
                " fingerprint, meta, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (platform, workspace, user, service) DO UPDATE SET"
                " ciphertext = excluded.ciphertext, fingerprint = excluded.fingerprint,"
                " meta = excluded.meta, updated_at = excluded.updated_at",
                (
                    owner.platform,
                    owner.workspace,
                    owner.user,
                    service,
                    self._box.encrypt(secret),
                    fingerprint(secret),
                    # Values are labels (e.g. "label", "base_url"), never secrets; coerced to str.
                    json.dumps({str(k): str(v) for k, v in (meta or {}).items()}),
                    now,
                    now,
                ),
            )
            row = await _select_info(conn, owner, service)
        assert row is not None  # just written in the same transaction
        self._cache[_cache_key(owner, service)] = secret
        return row

    async def get(self, owner: Owner, service: str) -> str | None:
        """The decrypted secret, or None; SecretBoxError if the master key changed."""
        key = _cache_key(owner, service)
        if key in self._cache:
            return self._cache[key]
        async with self._db.read() as conn:
            async with conn.execute(
                "SELECT ciphertext FROM credentials"
                " WHERE platform = ? AND workspace = ? AND user = ? AND service = ?",
                (owner.platform, owner.workspace, owner.user, service),
            ) as cur:
                row = await cur.fetchone()
        secret = None if row is None else self._box.decrypt(bytes(row["ciphertext"]))
        self._cache[key] = secret
        return secret

    async def info(self, owner: Owner, service: str) -> CredentialInfo | None:
        """What may be shown about the stored secret (no decryption involved)."""
        async with self._db.read() as conn:
            return await _select_info(conn, owner, service)

    async def all_for(self, owner: Owner) -> list[CredentialInfo]:
        """Every credential `owner` has stored, by service name."""
        async with self._db.read() as conn:
            async with conn.execute(
                f"SELECT {_INFO_COLUMNS} FROM credentials"
                " WHERE platform = ? AND workspace = ? AND user = ? ORDER BY service",
                (owner.platform, owner.workspace, owner.user),
            ) as cur:
                rows = await cur.fetchall()
        return [_to_info(r) for r in rows]

    async def delete(self, owner: Owner, service: str) -> bool:
        """Forget the secret; True if there was one."""
        self._cache.pop(_cache_key(owner, service), None)
        async with self._db.write() as conn:
            cur = await conn.execute(
                "DELETE FROM credentials"
                " WHERE platform = ? AND workspace = ? AND user = ? AND service = ?",
                (owner.platform, owner.workspace, owner.user, service),
            )
            return cur.rowcount > 0


_INFO_COLUMNS = "service, fingerprint, meta, created_at, updated_at"


def _cache_key(owner: Owner, service: str) -> tuple[str, str, str, str]:
    return (owner.platform, owner.workspace, owner.user, service)


async def _select_info(
    conn: aiosqlite.Connection, owner: Owner, service: str
) -> CredentialInfo | None:
    async with conn.execute(
        f"SELECT {_INFO_COLUMNS} FROM credentials"
        " WHERE platform = ? AND workspace = ? AND user = ? AND service = ?",
        (owner.platform, owner.workspace, owner.user, service),
    ) as cur:
        row = await cur.fetchone()
    return _to_info(row) if row is not None else None


def _to_info(row: aiosqlite.Row) -> CredentialInfo:
    return CredentialInfo(
        service=row["service"],
        fingerprint=row["fingerprint"],
        meta=json.loads(row["meta"]),
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
    )
