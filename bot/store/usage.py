"""The usage ledger (one row per billed call) and each conversation's last AllToken call."""

from __future__ import annotations

from decimal import Decimal

from bot.store.backend import Row, StoreBackend
from bot.store.models import LastCall, Owner, UsageRecord, from_iso, iso, utcnow


class Usage:
    """Repository for the `usage` and `last_calls` tables."""

    def __init__(self, db: StoreBackend) -> None:
        self._db = db

    async def record(self, rec: UsageRecord) -> None:
        """Append one call to the ledger."""
        self._db.append(INSERT_USAGE, usage_params(rec))

    async def recent(self, owner: Owner, limit: int = 20) -> list[UsageRecord]:
        """`owner`'s most recent calls, newest first."""
        await self._db.flush()  # read our own queued appends
        async with self._db.read() as conn:
            rows = await conn.fetchall(
                'SELECT * FROM usage WHERE platform = ? AND workspace = ? AND "user" = ?'
                " ORDER BY created_at DESC, id DESC LIMIT ?",
                (owner.platform, owner.workspace, owner.user, max(0, limit)),
            )
        return [_to_usage(r) for r in rows]

    async def set_last_call(self, owner: Owner, conversation_key: str, call: LastCall) -> None:
        """Remember `call` as `owner`'s latest in this conversation (replacing the previous)."""
        self._db.append(
            'INSERT INTO last_calls (platform, workspace, "user", conversation_key, call,'
            " updated_at) VALUES (?, ?, ?, ?, ?, ?)"
            ' ON CONFLICT (platform, workspace, "user", conversation_key) DO UPDATE SET'
            " call = excluded.call, updated_at = excluded.updated_at",
            (
                owner.platform,
                owner.workspace,
                owner.user,
                conversation_key,
                # JSON keeps Decimals as strings, so prices round-trip exactly.
                call.model_dump_json(),
                iso(utcnow()),
            ),
        )

    async def get_last_call(self, owner: Owner, conversation_key: str) -> LastCall | None:
        """`owner`'s latest call in this conversation, if any."""
        await self._db.flush()  # read our own queued appends
        async with self._db.read() as conn:
            row = await conn.fetchone(
                "SELECT call FROM last_calls"
                ' WHERE platform = ? AND workspace = ? AND "user" = ? AND conversation_key = ?',
                (owner.platform, owner.workspace, owner.user, conversation_key),
            )
        return LastCall.model_validate_json(row["call"]) if row is not None else None


INSERT_USAGE = (
    'INSERT INTO usage (platform, workspace, "user", service, command, model,'
    " prompt_tokens, completion_tokens, cost_usd, request_id, conversation_key,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def usage_params(rec: UsageRecord) -> tuple[object, ...]:
    """The parameters of `INSERT_USAGE` for one call (also written with its ledger row)."""
    return (
        rec.owner.platform,
        rec.owner.workspace,
        rec.owner.user,
        rec.service,
        rec.command,
        rec.model,
        rec.prompt_tokens,
        rec.completion_tokens,
        # str(Decimal) keeps every digit as given ("0.0000188000" stays so).
        None if rec.cost_usd is None else str(rec.cost_usd),
        rec.request_id,
        rec.conversation_key,
        iso(rec.created_at),
    )


def _to_usage(row: Row) -> UsageRecord:
    return UsageRecord(
        owner=Owner(platform=row["platform"], workspace=row["workspace"], user=row["user"]),
        service=row["service"],
        command=row["command"],
        model=row["model"],
        prompt_tokens=row["prompt_tokens"],
        completion_tokens=row["completion_tokens"],
        cost_usd=None if row["cost_usd"] is None else Decimal(row["cost_usd"]),
        request_id=row["request_id"],
        conversation_key=row["conversation_key"],
        created_at=from_iso(row["created_at"]),
    )
