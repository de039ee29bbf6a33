"""Pure presentation for `/openclaw-token`: amounts, tables, filters, failures, help. No I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel

from bot.backends.openclaw_token.service import (
    Account,
    AutoTopup,
    Credits,
    HistoryPage,
    KeyDetail,
    ProvisionedKey,
    Purchase,
    next_reset,
    platform_fee,
    purchase_total,
)
from bot.backends.openclaw_token.spec import SPECS, KeyFilter, KeySort, OpenClawHelp
from bot.core.errors import BackendError
from bot.core.messages import Failure, Fields, Text
from bot.store import AuditEntry

# Never shown, not even in --json: the account's own credentials.
_SECRET_FIELDS = frozenset({"management_key", "access_token", "device_code"})
_UNLIMITED = "no limit"


def usd(amount: Decimal | float | None) -> str:
    """`$14.54`; sub-cent amounts keep their digits (`$0.000155`)."""
    if amount is None:
        return "n/a"
    value = Decimal(str(amount))
    if value != 0 and abs(value) < Decimal("0.01"):
        return f"${value.quantize(Decimal('0.000001')).normalize():f}"
    return f"${value.quantize(Decimal('0.01')):,}"


def short_time(value: str | None) -> str:
    """`2026-05-01 12:00 UTC` from an ISO time ("—" when absent)."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def json_block(data: Any, *, keep_key: bool = False) -> Text:
    """--json: the raw data in a code block, without the account's credentials."""
    raw = data.model_dump(mode="json") if isinstance(data, BaseModel) else data
    return Text(markdown="```json\n" + json.dumps(_public(raw, keep_key), indent=2) + "\n```")


def _public(value: Any, keep_key: bool) -> Any:
    if isinstance(value, dict):
        return {
            k: _public(v, keep_key)
            for k, v in value.items()
            if k not in _SECRET_FIELDS and (keep_key or k != "key")
        }
    if isinstance(value, list):
        return [_public(v, keep_key) for v in value]
    return value


# --- account and credits -------------------------------------------------------------------


def account_fields(account: Account) -> Fields:
    """`auth whoami`."""
    return Fields(
        title="OpenClaw Token account",
        rows=[
            ("email", account.email),
            ("plan", account.plan),
            ("credits remaining", usd(account.credits_remaining)),
            ("active keys", str(account.keys_count)),
            ("created", short_time(account.created_at)),
        ],
    )


def credits_fields(credits: Credits) -> Fields:
    """`credits balance`."""
    return Fields(
        title="OpenClaw Token credits",
        rows=[
            ("total", usd(credits.total_credits)),
            ("used", usd(credits.total_usage)),
            ("remaining", usd(credits.remaining)),
        ],
    )


def quote_fields(amount: Decimal) -> Fields:
    """What `credits buy` will charge, before the Confirm button."""
    return Fields(
        title="Buy OpenClaw Token credits",
        rows=[
            ("credits", usd(amount)),
            ("platform fee (5.5 %, min $0.80)", usd(platform_fee(amount))),
            ("total charged", usd(purchase_total(amount))),
        ],
    )


def purchase_fields(purchase: Purchase) -> Fields:
    """A completed purchase."""
    return Fields(
        title="Credits purchased",
        rows=[
            ("credits", usd(purchase.amount)),
            ("platform fee", usd(purchase.platform_fee)),
            ("total charged", usd(purchase.total_charged)),
            ("new balance", usd(purchase.new_balance)),
            ("transaction", purchase.transaction_id or "—"),
        ],
    )


def history_parts(page: HistoryPage) -> list[Fields | Text]:
    """`credits history`: one row per transaction, and how to see more."""
    if not page.items:
        return [Text(markdown="No transactions match.")]
    rows = [
        (
            short_time(t.created_at),
            f"{t.type} {'+' if t.amount > 0 else '−'}{usd(abs(t.amount))}"
            f" → {usd(t.balance_after)} · {t.description or ''}".rstrip(" ·"),
        )
        for t in page.items
    ]
    first = page.offset + 1
    title = f"Transactions {first}–{page.offset + len(page.items)} of {page.total}"
    parts: list[Fields | Text] = [Fields(title=title, rows=rows)]
    if page.has_more:
        parts.append(Text(markdown=f"More: `--offset {page.offset + len(page.items)}`"))
    return parts


def topup_fields(settings: AutoTopup) -> Fields:
    """`credits auto-topup`."""
    return Fields(
        title="Auto top-up",
        rows=[
            ("enabled", "yes" if settings.enabled else "no"),
            ("when the balance drops below", usd(settings.threshold)),
            ("add", usd(settings.amount)),
        ],
    )


# --- keys ----------------------------------------------------------------------------------


def key_status(key: ProvisionedKey, now: datetime | None = None) -> str:
    """revoked / expired / disabled / active."""
    if key.revoked or key.revoked_at:
        return "revoked"
    if key.expires_at:
        try:
            moment = datetime.fromisoformat(key.expires_at.replace("Z", "+00:00"))
            if moment <= (now or datetime.now(UTC)):
                return "expired"
        except ValueError:
            pass
    return "disabled" if key.disabled else "active"


def limit_text(key: ProvisionedKey) -> str:
    """`$10.00 monthly`, or `no limit`."""
    if key.credit_limit is None:
        return _UNLIMITED
    return f"{usd(key.credit_limit)} {key.limit_reset or 'total'}"


def key_fields(key: ProvisionedKey, title: str = "Provisioned key") -> Fields:
    """One key's settings."""
    return Fields(
        title=title,
        rows=[
            ("name", key.name),
            ("hash", key.hash),
            ("status", key_status(key)),
            ("credit limit", limit_text(key)),
            ("usage", usd(key.usage)),
            ("created", short_time(key.created_at)),
            ("expires", short_time(key.expires_at) if key.expires_at else "never"),
        ],
    )


def detail_parts(key: KeyDetail) -> list[Fields]:
    """`keys info`: settings, the usage breakdown and usage by model."""
    rows = [
        *key_fields(key).rows,
        ("usage today", usd(key.usage_daily)),
        ("usage this week", usd(key.usage_weekly)),
        ("usage this month", usd(key.usage_monthly)),
        ("requests", f"{key.requests_count:,}"),
    ]
    parts = [Fields(title=f"Key {key.name}", rows=rows)]
    if key.model_usage:
        parts.append(
            Fields(
                title="Usage by model",
                rows=[
                    (m.model, f"{m.requests:,} requests · {m.tokens:,} tokens · {usd(m.cost)}")
                    for m in key.model_usage
                ],
            )
        )
    return parts


def usage_fields(key: KeyDetail, now: datetime) -> Fields:
    """`keys usage`: where the key stands against its limit."""
    rows = [("status", key_status(key, now)), ("usage (lifetime)", usd(key.usage))]
    if key.credit_limit is not None:
        used = key.period_usage()
        left = max(key.credit_limit - used, Decimal(0))
        period = key.limit_reset or "lifetime"
        rows += [
            (f"used ({period})", f"{usd(used)} of {usd(key.credit_limit)}"),
            ("left", usd(left)),
        ]
        if key.limit_reset:
            rows.append(("resets", f"{next_reset(key.limit_reset, now):%Y-%m-%d %H:%M} UTC"))
    else:
        rows.append(("credit limit", _UNLIMITED))
    rows += [
        (
            "today / week / month",
            f"{usd(key.usage_daily)} / {usd(key.usage_weekly)} / {usd(key.usage_monthly)}",
        ),
        ("requests", f"{key.requests_count:,}"),
    ]
    return Fields(title=f"Usage of {key.name} ({key.hash})", rows=rows)


def keys_table(keys: Sequence[ProvisionedKey]) -> Fields | Text:
    """`keys list`: one row per key."""
    if not keys:
        return Text(
            markdown="No keys match. Create one with `/openclaw-token keys create --name …`."
        )
    return Fields(
        title=f"{len(keys)} key(s)",
        rows=[
            (k.name, f"{k.hash} · {usd(k.usage)} used · {limit_text(k)} · {key_status(k)}")
            for k in keys
        ],
    )


def apply_filter(keys: Iterable[ProvisionedKey], wanted: KeyFilter | None) -> list[ProvisionedKey]:
    """Keep the keys matching `active`, `disabled` or `usage<op>N`."""
    items = list(keys)
    if wanted is None:
        return items
    if wanted.kind == "active":
        return [k for k in items if key_status(k) == "active"]
    if wanted.kind == "disabled":
        return [k for k in items if k.disabled]
    value = wanted.value or Decimal(0)
    tests = {
        ">": lambda u: u > value,
        ">=": lambda u: u >= value,
        "<": lambda u: u < value,
        "<=": lambda u: u <= value,
        "=": lambda u: u == value,
    }
    test = tests[wanted.op or ">"]
    return [k for k in items if test(k.usage)]


def sort_keys(keys: Iterable[ProvisionedKey], order: KeySort | None) -> list[ProvisionedKey]:
    """Order keys by name, usage, created, limit or hash (`-field` = descending)."""
    items = list(keys)
    if order is None:
        return items

    def by(key: ProvisionedKey) -> Any:
        if order.field == "name":
            return key.name.lower()
        if order.field == "usage":
            return key.usage
        if order.field == "limit":
            # Unlimited keys sort after every limit.
            return (key.credit_limit is None, key.credit_limit or Decimal(0))
        if order.field == "hash":
            return key.hash
        return key.created_at or ""

    return sorted(items, key=by, reverse=order.descending)


# --- audit ---------------------------------------------------------------------------------


def audit_fields(entries: Sequence[AuditEntry], *, everyone: bool) -> Fields | Text:
    """`audit show`: time, command, outcome and request id (and who, for admins)."""
    if not entries:
        return Text(markdown="No operations recorded yet.")
    rows = []
    for e in entries:
        bits = [e.command, e.outcome]
        if e.detail:
            bits.append(e.detail)
        if e.request_id:
            bits.append(f"request {e.request_id}")
        if everyone:
            bits.insert(0, f"{e.owner.platform}:{e.owner.user}")
        rows.append((f"{e.created_at:%Y-%m-%d %H:%M:%S}", " · ".join(bits)))
    title = "Recent operations (everyone)" if everyone else "Your recent operations"
    return Fields(title=title, rows=rows)


# --- failures ------------------------------------------------------------------------------

_CMD = "/openclaw-token"
_HINTS: dict[str, str] = {
    "UNAUTHORIZED": f"Sign in again with `{_CMD} auth login` (GitHub) or `{_CMD} auth login --email`.",
    "INVALID_CREDENTIALS": f"Check the email and password and try `{_CMD} auth login --email` "
    f"again, or sign in with GitHub: `{_CMD} auth login`.",
    "EMAIL_EXISTS": f"That email already has an account: sign in with `{_CMD} auth login --email`.",
    "INVALID_INPUT": "Check the command's arguments.",
    "INSUFFICIENT_CREDITS": f"Your OpenClaw Token credits are used up: buy more with "
    f"`{_CMD} credits buy --amount 25`, or turn on `{_CMD} credits auto-topup --enable`.",
    "KEY_NAME_EXISTS": f"Pick another `--name`, or see your keys with `{_CMD} keys list`.",
    "KEY_NOT_FOUND": f"Check the hash with `{_CMD} keys list`.",
    "KEY_ALREADY_REVOKED": "Nothing to do: that key was already revoked.",
    "KEY_REVOKED": f"That key is revoked for good: create a new one with `{_CMD} keys create`.",
    "KEY_EXPIRED": f"That key has expired: create a new one with `{_CMD} keys create`.",
    "CONFLICT": f"This request conflicts with an earlier one; run `{_CMD} credits buy` again for a new quote.",
    "PAYLOAD_TOO_LARGE": "The request is over 1 MB; send less text.",
    "UPSTREAM_UNREACHABLE": "The OpenClaw Token proxy could not reach the model provider; try again shortly.",
    "timeout": "OpenClaw Token did not answer within 15 s; try again shortly.",
    "connection_error": "tokenbot could not reach OpenClaw Token; try again in a minute.",
    "bad_response": "OpenClaw Token sent an answer tokenbot could not read; try again.",
}


def render_openclaw_failure(error: BackendError, key_hash: str | None = None) -> Failure:
    """A Failure with a plain next step for every OpenClaw Token code."""
    code = error.code
    target = f" {key_hash}" if key_hash else " <hash>"
    hint = _HINTS.get(code)
    message = error.message
    if code == "CREDIT_LIMIT_EXCEEDED":
        message = f"Your provisioned key reached its credit limit. {error.message}"
        hint = (
            f"Raise it with `{_CMD} keys update{target} --limit <USD>`, or wait for the "
            "limit's reset."
        )
    elif code == "KEY_DISABLED":
        hint = f"Enable it with `{_CMD} keys update{target} --enabled`."
    elif hint is None and error.status == 429:
        wait = f" in about {int(error.retry_after)} s" if error.retry_after else " in a minute"
        hint = f"OpenClaw Token is rate-limiting requests; try again{wait}."
    elif hint is None and (error.status >= 500 or error.status == 0):
        hint = "OpenClaw Token had a server error. Try again in a minute."
    return Failure(
        code=code, message=f"OpenClaw Token: {message}", request_id=error.request_id, hint=hint
    )


# --- help ----------------------------------------------------------------------------------


def help_text(topic: str | None = None) -> Text:
    """Every command's usage line, or one group's with what each does (from `SPECS`)."""
    group = [s for s in SPECS if topic and s.topic == topic and s.model is not OpenClawHelp]
    if group:
        return Text(markdown="\n".join(f"• `{s.usage}` — {s.description}" for s in group))
    lines = [s.usage for s in SPECS if s.model is not OpenClawHelp]
    return Text(
        markdown="**OpenClaw Token** — credits, provisioned keys with spend limits, and a "
        "fallback for AllToken chat and search when your AllToken balance runs out.\n"
        + "\n".join(f"• `{line}`" for line in lines)
        + "\nAdd `--json` for the raw data. Passwords go only into private forms, never into "
        "a message."
    )
