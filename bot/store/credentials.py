"""Per-user credentials, encrypted with the SecretBox before they touch the database."""

from __future__ import annotations

import hmac
import json
import logging

from bot.store.backend import Row, StoreBackend, Tx
from bot.store.models import CredentialInfo, Owner, from_iso, iso, utcnow
from bot.store.notice_listener import CoherentCache, NoticeListener
from bot.store.secret_box import SecretBox, SecretBoxError

log = logging.getLogger(__name__)

# Secrets shorter than this get no visible tail: four characters of a short secret is too much.
_MIN_CHARS_FOR_TAIL = 12
# Older stores sealed a canary under the master key; newer ones record the key's fingerprint
# (`SecretBox.fingerprint`). Either tells at start-up that the master key changed.
_CANARY_KEY = "master_key_canary"
_FINGERPRINT_KEY = "master_key_fingerprint"
# PostgreSQL: every put/delete notifies this channel (at commit), so other replicas drop their
# cached copy at once. The payload names the owner and service, never the secret.
NOTIFY_CHANNEL = "tokenbot_credentials"


class CredentialUnreadableError(SecretBoxError):
    """A stored credential exists but cannot be decrypted (master key changed, or damage)."""

    def __init__(self, owner: Owner, service: str, source: str) -> None:
        self.owner = owner
        self.service = service
        super().__init__(
            f"the stored {service} credential cannot be decrypted with the current master key "
            f"(from {source}); it must be set again"
        )


def fingerprint(secret: str) -> str:
    """A safe hint for which secret is stored: "…" and the last 4 characters."""
    return "…" + (secret[-4:] if len(secret) >= _MIN_CHARS_FOR_TAIL else "")


class Credentials(CoherentCache):
    """Repository for the `credentials` table."""

    _what = "credential-change (keys)"

    def __init__(
        self, db: StoreBackend, box: SecretBox, listener: NoticeListener | None = None
    ) -> None:
        super().__init__(db, listener, NOTIFY_CHANNEL)
        self._box = box
        # Every command reads its caller's key; a cache kept in step by put/delete saves a
        # database round trip per command. With several processes on one PostgreSQL, another
        # replica's change reaches this one as a NOTIFY (see `listen`), which forgets the copy.
        self._cache: dict[tuple[str, str, str, str], str | None] = {}

    async def check_master_key(self) -> None:
        """Record the master key's fingerprint on first use; SecretBoxError if it changed since.

        A changed key with no credentials stored loses nothing, so the new key's fingerprint
        is simply recorded in that case (with a warning).
        """
        current = self._box.fingerprint()
        async with self._db.write() as conn:
            await conn.lock_store()  # replicas starting together check (and record) once
            recorded = await _meta(conn, _FINGERPRINT_KEY)
            if recorded is not None:
                same = hmac.compare_digest(bytes(recorded).decode("ascii", "replace"), current)
            else:
                canary = await _meta(conn, _CANARY_KEY)
                same = canary is None or self._decrypts(bytes(canary))
            if same and recorded is not None:
                return
            if not same:
                count = await conn.fetchone("SELECT COUNT(*) FROM credentials")
                stored = int(count[0]) if count is not None else 0
                if stored > 0:
                    raise SecretBoxError(self._changed_message(stored))
                log.warning("master key changed but no credentials were stored; continuing")
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (_FINGERPRINT_KEY, current.encode("ascii")),
            )

    def _decrypts(self, token: bytes) -> bool:
        try:
            self._box.decrypt(token)
        except SecretBoxError:
            return False
        return True

    def _changed_message(self, stored: int) -> str:
        path = self._db.location
        if self._box.generated:
            cause = (
                f"{self._box.source} was missing, so a new master key was just generated there; "
                f"stop tokenbot and restore the previous {self._box.source} from a backup over it"
            )
        else:
            cause = (
                f"the current key comes from {self._box.source}; restore the previous "
                "TOKENBOT_MASTER_KEY or master.key"
            )
        return (
            f"the master key changed: {path} holds {stored} stored key(s) encrypted with a "
            f"different master key — {cause}. tokenbot will not start rather than make every "
            "stored key unusable"
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
        generation = self._generation
        async with self._db.write() as conn:
            await conn.execute(
                'INSERT INTO credentials (platform, workspace, "user", service, ciphertext,'
                " fingerprint, meta, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ' ON CONFLICT (platform, workspace, "user", service) DO UPDATE SET'
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
            await self._notify(conn, owner, service)
        assert row is not None  # just written in the same transaction
        if self._coherent and generation == self._generation:
            self._cache[_cache_key(owner, service)] = secret
        else:
            # Another process changed a key meanwhile (maybe this one): read it back next time.
            self._cache.pop(_cache_key(owner, service), None)
        return row

    async def get(self, owner: Owner, service: str) -> str | None:
        """The decrypted secret, or None; CredentialUnreadableError if it cannot be decrypted."""
        key = _cache_key(owner, service)
        if key in self._cache:
            return self._cache[key]
        generation = self._generation
        async with self._db.read() as conn:
            row = await conn.fetchone(
                f"SELECT ciphertext FROM credentials WHERE {_OWNER_SERVICE}",
                (owner.platform, owner.workspace, owner.user, service),
            )
        if row is None:
            secret = None
        else:
            try:
                secret = self._box.decrypt(bytes(row["ciphertext"]))
            except SecretBoxError:
                # Not cached: setting the key again (put) must be all it takes to recover.
                raise CredentialUnreadableError(owner, service, self._box.source) from None
        if self._coherent and generation == self._generation:
            self._cache[key] = secret
        return secret

    async def info(self, owner: Owner, service: str) -> CredentialInfo | None:
        """What may be shown about the stored secret, including whether it can be decrypted."""
        async with self._db.read() as conn:
            info = await _select_info(conn, owner, service)
        return None if info is None else await self._with_readability(owner, info)

    async def all_for(self, owner: Owner) -> list[CredentialInfo]:
        """Every credential `owner` has stored, by service name."""
        async with self._db.read() as conn:
            rows = await conn.fetchall(
                f"SELECT {_INFO_COLUMNS} FROM credentials"
                ' WHERE platform = ? AND workspace = ? AND "user" = ? ORDER BY service',
                (owner.platform, owner.workspace, owner.user),
            )
        infos = [_to_info(r) for r in rows]
        return [await self._with_readability(owner, info) for info in infos]

    async def _with_readability(self, owner: Owner, info: CredentialInfo) -> CredentialInfo:
        if _cache_key(owner, info.service) in self._cache:
            return info
        try:
            await self.get(owner, info.service)
        except CredentialUnreadableError:
            return info.model_copy(update={"readable": False})
        return info

    async def delete(self, owner: Owner, service: str) -> bool:
        """Forget the secret; True if there was one."""
        self._cache.pop(_cache_key(owner, service), None)
        async with self._db.write() as conn:
            deleted = await conn.execute(
                f"DELETE FROM credentials WHERE {_OWNER_SERVICE}",
                (owner.platform, owner.workspace, owner.user, service),
            )
            if deleted:
                await self._notify(conn, owner, service)
        self._cache.pop(_cache_key(owner, service), None)
        return deleted > 0

    def forget_cached(self, owner: Owner | None = None, service: str | None = None) -> None:
        """Drop cached secrets (one, or all when `owner` is None): another process changed them."""
        self._generation += 1
        if owner is None:
            self._cache.clear()
        elif service is None:
            mine = (owner.platform, owner.workspace, owner.user)
            for key in [k for k in self._cache if k[:3] == mine]:
                del self._cache[key]
        else:
            self._cache.pop(_cache_key(owner, service), None)

    # -- coherence across processes (PostgreSQL LISTEN/NOTIFY) ------------------------------

    async def _notify(self, conn: Tx, owner: Owner, service: str) -> None:
        if self._db.dialect.name != "postgresql":
            return
        payload = json.dumps(
            {
                "from": self._sender,
                "owner": [owner.platform, owner.workspace, owner.user],
                "service": service,
            }
        )
        # Delivered when this transaction commits, and only then.
        await conn.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, payload))

    def _on_notice(self, payload: str) -> None:
        try:
            notice = json.loads(payload)
            platform, workspace, user = notice["owner"]
            owner = Owner(platform=platform, workspace=workspace, user=user)
            service = str(notice["service"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed credential notice; forgetting every cached key")
            self.forget_cached()
            return
        if notice.get("from") != self._sender:
            self.forget_cached(owner, service)


_INFO_COLUMNS = "service, fingerprint, meta, created_at, updated_at"
_OWNER_SERVICE = 'platform = ? AND workspace = ? AND "user" = ? AND service = ?'


async def _meta(conn: Tx, key: str) -> bytes | None:
    row = await conn.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
    return None if row is None else bytes(row["value"])


def _cache_key(owner: Owner, service: str) -> tuple[str, str, str, str]:
    return (owner.platform, owner.workspace, owner.user, service)


async def _select_info(conn: Tx, owner: Owner, service: str) -> CredentialInfo | None:
    row = await conn.fetchone(
        f"SELECT {_INFO_COLUMNS} FROM credentials WHERE {_OWNER_SERVICE}",
        (owner.platform, owner.workspace, owner.user, service),
    )
    return _to_info(row) if row is not None else None


def _to_info(row: Row) -> CredentialInfo:
    return CredentialInfo(
        service=row["service"],
        fingerprint=row["fingerprint"],
        meta=json.loads(row["meta"]),
        created_at=from_iso(row["created_at"]),
        updated_at=from_iso(row["updated_at"]),
    )
