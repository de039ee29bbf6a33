"""The audit log: who ran what, how it ended, and the request id. Never a secret."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable

from bot.store.backend import Row, StoreBackend
from bot.store.models import AuditEntry, Owner, from_iso, iso

log = logging.getLogger(__name__)

# Fallback for when bot.core.key_shapes is unavailable: the key prefixes of the three gateways
# (AllToken sk-at-, OpenClaw Token sk-mgmt-/sk-prov-, OpenMarlin-style claw_wsk_).
_KEY_SHAPED = re.compile(r"(?i:(sk-at-|claw_wsk_|sk-mgmt-|sk-prov-))[A-Za-z0-9_\-]+")


def _fallback_redact(text: str) -> str:
    return _KEY_SHAPED.sub(lambda m: f"{m.group(1)}[redacted]", text)


# Both nets need one of these (case-insensitive): ASCII text without any skips them (every
# audit row has four text fields, and almost none holds anything key-shaped). Beyond ASCII the
# regexes' case folding is wider than lower() ("ſ" matches "s"), so such text always goes through.
_KEY_HINTS = ("sk-", "claw_wsk_")
_shared: list[Callable[[str], str] | None] = []


def _shared_redact() -> Callable[[str], str] | None:
    # Imported lazily so the store does not depend on bot.core.key_shapes being present;
    # looked up once.
    if not _shared:
        try:
            module = importlib.import_module("bot.core.key_shapes")
        except ImportError:
            return None
        found = getattr(module, "redact", None)
        _shared.append(found if callable(found) else None)
    return _shared[0]


def redact(text: str) -> str:
    """Remove key-shaped strings: bot.core.key_shapes.redact when available, then the local patterns."""
    if text.isascii():
        lowered = text.lower()
        if not any(hint in lowered for hint in _KEY_HINTS):
            return text
    shared = _shared_redact()
    if shared is not None:
        try:
            text = shared(text)
        except Exception:
            # A bug there must not stop the audit, nor let a key through: the local net follows.
            log.warning("bot.core.key_shapes.redact failed; using the store's own patterns only")
    # Always also apply the local patterns: a second net costs nothing.
    return _fallback_redact(text)


def _redact_opt(text: str | None) -> str | None:
    return None if text is None else redact(text)


class Audit:
    """Repository for the `audit` table."""

    def __init__(self, db: StoreBackend) -> None:
        self._db = db

    async def add(self, entry: AuditEntry) -> None:
        """Append `entry`, with every text field redacted of key-shaped strings."""
        self._db.append(
            'INSERT INTO audit (platform, workspace, "user", command, outcome, detail,'
            " request_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry.owner.platform,
                entry.owner.workspace,
                entry.owner.user,
                redact(entry.command),
                redact(entry.outcome),
                _redact_opt(entry.detail),
                _redact_opt(entry.request_id),
                iso(entry.created_at),
            ),
        )

    async def recent(self, owner: Owner | None, limit: int = 20) -> list[AuditEntry]:
        """Newest entries first, for one owner or (None) for everyone."""
        sql = "SELECT * FROM audit"
        params: list[object] = []
        if owner is not None:
            sql += ' WHERE platform = ? AND workspace = ? AND "user" = ?'
            params += [owner.platform, owner.workspace, owner.user]
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(max(0, limit))
        await self._db.flush()  # read our own queued appends
        async with self._db.read() as conn:
            rows = await conn.fetchall(sql, params)
        return [_to_entry(r) for r in rows]


def _to_entry(row: Row) -> AuditEntry:
    return AuditEntry(
        owner=Owner(platform=row["platform"], workspace=row["workspace"], user=row["user"]),
        command=row["command"],
        outcome=row["outcome"],
        detail=row["detail"],
        request_id=row["request_id"],
        created_at=from_iso(row["created_at"]),
    )
