"""Workspace policy set by admins in chat: the `workspace_policy` table, one JSON value per key.

The keys and their shapes belong to bot/teams (admins, channels, commands, models,
channel_models, budget, notices); the store keeps them as JSON text and knows two of them:
"budget" (whose own-key opt-ins decide which spend counts against caps) and "notices".

Every gated command reads its workspace's policy, so it is cached per workspace and kept
coherent exactly like the credential cache (bot/store/credentials.py): always on SQLite (one
process); on PostgreSQL only while LISTENing on `tokenbot_policy`, to which every policy write
sends a NOTIFY inside its transaction; a generation counter keeps a read that raced a notice
from caching what it read. A change is a read-modify-write in one transaction under the
workspace lock (`update`), so two concurrent changes both land.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from bot.store.backend import StoreBackend, Tx
from bot.store.models import iso, utcnow
from bot.store.notice_listener import CoherentCache, NoticeListener

log = logging.getLogger(__name__)

# Advisory lock class for per-workspace serialisation (PostgreSQL's two-key form, so it never
# meets the one-key store lock taken by migrations). Any constant unlikely to clash.
_WORKSPACE_LOCK_CLASS = 0x70CB
NOTICES_KEY = "notices"
BUDGET_KEY = "budget"
# PostgreSQL: every policy write notifies this channel (at commit); the payload names the
# workspace only, so other replicas forget their cached copy of it.
NOTIFY_CHANNEL = "tokenbot_policy"
Workspace = tuple[str, str]
T = TypeVar("T")


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


async def _read_all(tx: Tx, platform: str, workspace: str) -> dict[str, Any]:
    rows = await tx.fetchall(
        "SELECT key, value FROM workspace_policy WHERE platform = ? AND workspace = ? ORDER BY key",
        (platform, workspace),
    )
    return {row["key"]: json.loads(row["value"]) for row in rows}


class PolicyRows(CoherentCache):
    """Repository for `workspace_policy` (values are JSON, key by key), with a coherent cache."""

    _what = "policy-change (policies)"

    def __init__(self, db: StoreBackend, listener: NoticeListener | None = None) -> None:
        super().__init__(db, listener, NOTIFY_CHANNEL)
        self._cache: dict[Workspace, dict[str, Any]] = {}
        # Per workspace: reader -> (the cached policy it was read from, what it returned).
        self._views: dict[Workspace, dict[Callable[[dict[str, Any]], Any], tuple[object, Any]]] = {}

    async def get_all(self, platform: str, workspace: str) -> dict[str, Any]:
        """Every key set for the workspace, decoded; {} when none is."""
        return copy.deepcopy(await self._current(platform, workspace))  # callers may change it

    async def view(self, platform: str, workspace: str, reader: Callable[[dict[str, Any]], T]) -> T:
        """`reader(policy)`, worked out once per cached policy rather than on every command.

        For what every command parses (the gate's rules, the budget caps): `reader` must be
        a pure function of the policy, and its result is shared, so callers must not change it.
        """
        current = await self._current(platform, workspace)
        if not self._coherent or self._cache.get((platform, workspace)) is not current:
            return reader(copy.deepcopy(current))  # not cached: nothing to keep it with
        views = self._views.setdefault((platform, workspace), {})
        seen = views.get(reader)
        if seen is None or seen[0] is not current:
            seen = views[reader] = (current, reader(copy.deepcopy(current)))
        return seen[1]

    async def _current(self, platform: str, workspace: str) -> dict[str, Any]:
        """The cached policy itself (never to be changed), read into the cache if missing."""
        cached = self._cache.get((platform, workspace))
        if cached is not None:
            return cached
        generation = self._generation
        async with self._db.read() as tx:
            found = await _read_all(tx, platform, workspace)
        self._keep(platform, workspace, found, generation)
        return found

    async def set(self, platform: str, workspace: str, key: str, value: Any, by_user: str) -> None:
        """Replace one key's value (any JSON-serialisable value; None is stored as null)."""
        await self.update(platform, workspace, key, lambda _old: value, by_user)

    async def update(
        self,
        platform: str,
        workspace: str,
        key: str,
        change: Callable[[Any], Any],
        by_user: str,
    ) -> Any:
        """Write `change(current value)` in the transaction that read it; the new value.

        Serialised per workspace on every replica, so concurrent changes all land. `change`
        runs inside the write transaction: pure and quick, and it gets a copy it may alter.
        Nothing is written when it returns the current value unchanged.
        """
        generation = self._generation
        async with self._db.write() as tx:
            await lock_workspace(tx, self._db.dialect.name, platform, workspace)
            current = await read_value(tx, platform, workspace, key)
            new = change(copy.deepcopy(current))
            unchanged = new == current and (
                current is not None or await _is_set(tx, platform, workspace, key)
            )
            if not unchanged:
                await _write_value(tx, platform, workspace, key, new, by_user)
                await self._notify(tx, platform, workspace)
            # Read under the lock, this is the policy as it is now: worth caching either way.
            after = await _read_all(tx, platform, workspace)
        self._keep(platform, workspace, after, generation)
        return new

    async def claim_notice(self, platform: str, workspace: str, notice_key: str) -> bool:
        """Mark `notice_key` as sent in "notices"; True only for the first caller on any replica.

        Keys read "<period>:<who>:<pct>" with an ISO period ("2026-12" or "2026-12-02"): when a
        notice of a later month is claimed, those of earlier months are forgotten.
        """
        first = False

        def claim(notices: Any) -> Any:
            nonlocal first
            if not isinstance(notices, dict):
                notices = {}
            if notices.get(notice_key):
                return notices
            first = True
            month = notice_key[:7]
            kept = {k: v for k, v in notices.items() if not _older_month(k[:7], month)}
            kept[notice_key] = True
            return kept

        await self.update(platform, workspace, NOTICES_KEY, claim, "tokenbot")
        return first

    # -- the cache ------------------------------------------------------------------------------

    def _keep(self, platform: str, workspace: str, found: dict[str, Any], generation: int) -> None:
        self._views.pop((platform, workspace), None)
        if self._coherent and generation == self._generation:
            self._cache[(platform, workspace)] = found
        else:
            # Another process changed a policy meanwhile (maybe this one): read it next time.
            self._cache.pop((platform, workspace), None)

    def forget_cached(self, platform: str | None = None, workspace: str = "") -> None:
        """Drop a cached policy (or all when `platform` is None): another process changed it."""
        self._generation += 1
        if platform is None:
            self._cache.clear()
            self._views.clear()
        else:
            self._cache.pop((platform, workspace), None)
            self._views.pop((platform, workspace), None)

    # -- coherence across processes (PostgreSQL LISTEN/NOTIFY) ----------------------------------

    async def _notify(self, tx: Tx, platform: str, workspace: str) -> None:
        if self._db.dialect.name != "postgresql":
            return
        payload = json.dumps({"from": self._sender, "workspace": [platform, workspace]})
        # Delivered when this transaction commits, and only then.
        await tx.execute("SELECT pg_notify(?, ?)", (NOTIFY_CHANNEL, payload))

    def _on_notice(self, payload: str) -> None:
        try:
            notice = json.loads(payload)
            platform, workspace = notice["workspace"]
            sender = notice.get("from")
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignored a malformed policy notice; forgetting every cached policy")
            self.forget_cached()
            return
        if sender != self._sender:
            self.forget_cached(str(platform), str(workspace))


async def _is_set(tx: Tx, platform: str, workspace: str, key: str) -> bool:
    row = await tx.fetchone(
        "SELECT 1 FROM workspace_policy WHERE platform = ? AND workspace = ? AND key = ?",
        (platform, workspace, key),
    )
    return row is not None


def _older_month(candidate: str, current: str) -> bool:
    # Only ISO months ("YYYY-MM") are compared; any other key is kept.
    return _is_month(candidate) and _is_month(current) and candidate < current


def _is_month(text: str) -> bool:
    return len(text) == 7 and text[4] == "-" and text[:4].isdigit() and text[5:].isdigit()
