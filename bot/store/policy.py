"""Workspace policy set by admins in chat: the `workspace_policy` table, one JSON value per key.

The keys and their shapes belong to bot/teams (admins, channels, commands, models,
channel_models, budget, notices); the store keeps them as JSON text and knows two of them:
"budget" (whose own-key opt-ins decide which spend counts against caps) and "notices".
"""

from __future__ import annotations

import json
from typing import Any

from bot.store.backend import StoreBackend, Tx
from bot.store.models import iso, utcnow

# Advisory lock class for per-workspace serialisation (PostgreSQL's two-key form, so it never
# meets the one-key store lock taken by migrations). Any constant unlikely to clash.
_WORKSPACE_LOCK_CLASS = 0x70CB
NOTICES_KEY = "notices"
BUDGET_KEY = "budget"


async def lock_workspace(tx: Tx, dialect: str, platform: str, workspace: str) -> None:
    """Serialise this write transaction against every other one for the same workspace.

    PostgreSQL: an advisory lock held until commit, across every replica. SQLite: nothing to
    do, BEGIN IMMEDIATE already excludes every other writer on the file.
    """
    if dialect == "postgresql":
        await tx.execute(
            "SELECT pg_advisory_xact_lock(?, hashtext(?))",
            (_WORKSPACE_LOCK_CLASS, f"{platform}:{workspace}"),
        )


async def read_value(tx: Tx, platform: str, workspace: str, key: str) -> Any:
    """One policy value (decoded JSON), or None when unset."""
    row = await tx.fetchone(
        "SELECT value FROM workspace_policy WHERE platform = ? AND workspace = ? AND key = ?",
        (platform, workspace, key),
    )
    return None if row is None else json.loads(row["value"])


async def own_key_opt_in(tx: Tx, platform: str, workspace: str) -> list[str]:
    """The users whose own-key calls count against the caps (the "budget" value's opt-ins)."""
    budget = await read_value(tx, platform, workspace, BUDGET_KEY)
    if not isinstance(budget, dict):
        return []
    users = budget.get("own_key_opt_in") or []
    return sorted({str(user) for user in users}) if isinstance(users, list) else []


async def _write_value(
    tx: Tx, platform: str, workspace: str, key: str, value: Any, by_user: str
) -> None:
    await tx.execute(
        "INSERT INTO workspace_policy (platform, workspace, key, value, updated_at, updated_by)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, workspace, key) DO UPDATE SET"
        " value = excluded.value, updated_at = excluded.updated_at,"
        " updated_by = excluded.updated_by",
        (platform, workspace, key, json.dumps(value, sort_keys=True), iso(utcnow()), by_user),
    )


class PolicyRows:
    """Repository for `workspace_policy` (values are JSON; written whole, key by key)."""

    def __init__(self, db: StoreBackend) -> None:
        self._db = db

    async def get_all(self, platform: str, workspace: str) -> dict[str, Any]:
        """Every key set for the workspace, decoded; {} when none is."""
        async with self._db.read() as tx:
            rows = await tx.fetchall(
                "SELECT key, value FROM workspace_policy WHERE platform = ? AND workspace = ?"
                " ORDER BY key",
                (platform, workspace),
            )
        return {row["key"]: json.loads(row["value"]) for row in rows}

    async def set(self, platform: str, workspace: str, key: str, value: Any, by_user: str) -> None:
        """Replace one key's value (any JSON-serialisable value; None is stored as null)."""
        async with self._db.write() as tx:
            await lock_workspace(tx, self._db.dialect.name, platform, workspace)
            await _write_value(tx, platform, workspace, key, value, by_user)

    async def claim_notice(self, platform: str, workspace: str, notice_key: str) -> bool:
        """Mark `notice_key` as sent in "notices"; True only for the first caller on any replica.

        Keys read "<period>:<who>:<pct>" with an ISO period ("2026-12" or "2026-12-02"): when a
        notice of a later month is claimed, those of earlier months are forgotten.
        """
        async with self._db.write() as tx:
            await lock_workspace(tx, self._db.dialect.name, platform, workspace)
            notices = await read_value(tx, platform, workspace, NOTICES_KEY)
            if not isinstance(notices, dict):
                notices = {}
            if notices.get(notice_key):
                return False
            month = notice_key[:7]
            kept = {k: v for k, v in notices.items() if not _older_month(k[:7], month)}
            kept[notice_key] = True
            await _write_value(tx, platform, workspace, NOTICES_KEY, kept, "tokenbot")
        return True


def _older_month(candidate: str, current: str) -> bool:
    # Only ISO months ("YYYY-MM") are compared; any other key is kept.
    return _is_month(candidate) and _is_month(current) and candidate < current


def _is_month(text: str) -> bool:
    return len(text) == 7 and text[4] == "-" and text[:4].isdigit() and text[5:].isdigit()
