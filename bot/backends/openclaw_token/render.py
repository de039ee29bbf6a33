"""Pure presentation for `/openclaw-token`: amounts, tables, filters, failures, help. No I/O."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
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
    period_start,
    platform_fee,
    purchase_total,
)
from bot.backends.openclaw_token.spec import SPECS, KeyFilter, KeySort, OpenClawHelp
from bot.core.errors import BackendError
from bot.core.messages import Failure, Fields, Notice, Text
from bot.store import AuditEntry

# Never shown, not even in --json: the account's own credentials.
_SECRET_FIELDS = frozenset({"management_key", "access_token", "device_code"})
_UNLIMITED = "no limit"
_SERVER = "server's figure"
_REVOKED_NOTE = (
    "The server does not flag revoked keys in a list; the keys marked revoked are missing from "
    "your list of active keys."
)


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
            ("when a proxy request finds the balance at or below", usd(settings.threshold)),
            ("add", usd(settings.amount)),
        ],
    )


# --- keys ----------------------------------------------------------------------------------


def key_status(
    key: ProvisionedKey, now: datetime | None = None, revoked: Iterable[str] = ()
) -> str:
    """revoked / expired / disabled / active, from what the server said about the key.

    A list with revoked keys included does not flag them: `revoked` holds the hashes known to
    be revoked because the server's list of active keys leaves them out.
    """
    if key.revoked or key.revoked_at or key.hash in revoked:
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


@dataclass(frozen=True)
class SeenRefusal:
    """A spend-limit refusal tokenbot itself received from the proxy for one key."""

    code: str
    at: datetime
    request_id: str | None = None

    def holds(self, key: ProvisionedKey, now: datetime) -> bool:
        """Still true: no reset period has started since (a lifetime limit never resets)."""
        if key.credit_limit is None:
            return False
        return not key.limit_reset or self.at >= period_start(key.limit_reset, now)

    def text(self) -> str:
        """`none: the proxy refused this key (CREDIT_LIMIT_EXCEEDED) at 12:00 UTC`."""
        return f"none: the proxy refused this key ({self.code}) at {self.at:%Y-%m-%d %H:%M} UTC"


_REFUSED_AT, _REFUSED_CODE, _REFUSED_REQUEST = "refused_at", "refused_code", "refused_request"


def refusal_meta(code: str, at: datetime, request_id: str | None) -> dict[str, str]:
    """How a seen refusal is kept in the fallback credential's meta."""
    meta = {_REFUSED_AT: at.astimezone(UTC).isoformat(), _REFUSED_CODE: code}
    if request_id:
        meta[_REFUSED_REQUEST] = request_id
    return meta


def without_refusal(meta: Mapping[str, str]) -> dict[str, str]:
    """The meta with any seen refusal dropped."""
    return {
        k: v for k, v in meta.items() if k not in (_REFUSED_AT, _REFUSED_CODE, _REFUSED_REQUEST)
    }


def refusal_from_meta(meta: Mapping[str, str], key_hash: str) -> SeenRefusal | None:
    """The refusal kept for `key_hash`, if any."""
    raw = meta.get(_REFUSED_AT)
    if not raw or meta.get("hash") != key_hash:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return SeenRefusal(
        meta.get(_REFUSED_CODE, "CREDIT_LIMIT_EXCEEDED"), at, meta.get(_REFUSED_REQUEST)
    )


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def placeholder_breakdown(key: KeyDetail) -> bool:
    """The breakdown matches the real server's placeholder formula (shares of lifetime usage).

    openclaw-token-server derives usage_daily (15 %), usage_weekly (45 %), usage_monthly
    (100 %) and requests_count (100 per dollar) from lifetime usage instead of measuring them.
    """
    usage = key.usage
    if usage <= 0:
        return False
    return (
        key.usage_daily == _cents(usage * Decimal("0.15"))
        and key.usage_weekly == _cents(usage * Decimal("0.45"))
        and key.usage_monthly == usage
        and key.requests_count == int((usage * 100).to_integral_value(rounding=ROUND_FLOOR))
    )


def _placeholder_note(key: KeyDetail) -> Notice:
    return Notice(
        level="info",
        text="The server's daily, weekly and monthly figures, request count and per-model rows "
        f"are fixed shares of this key's lifetime usage ({usd(key.usage)}), not measurements; "
        "its spend limit is checked against the real usage of the period.",
    )


def detail_parts(key: KeyDetail, refusal: SeenRefusal | None = None) -> list[Fields | Notice]:
    """`keys info`: settings, the server's usage breakdown and usage by model, labelled so."""
    rows = [
        *key_fields(key).rows,
        (f"usage today ({_SERVER})", usd(key.usage_daily)),
        (f"usage this week ({_SERVER})", usd(key.usage_weekly)),
        (f"usage this month ({_SERVER})", usd(key.usage_monthly)),
        (f"requests ({_SERVER})", f"{key.requests_count:,}"),
    ]
    now = datetime.now(UTC)
    if refusal is not None and refusal.holds(key, now):
        rows.append(("limit left", refusal.text()))
    parts: list[Fields | Notice] = [Fields(title=f"Key {key.name}", rows=rows)]
    if key.model_usage:
        parts.append(
            Fields(
                title=f"Usage by model ({_SERVER}s)",
                rows=[
                    (m.model, f"{m.requests:,} requests · {m.tokens:,} tokens · {usd(m.cost)}")
                    for m in key.model_usage
                ],
            )
        )
    if placeholder_breakdown(key):
        parts.append(_placeholder_note(key))
    return parts


def usage_fields(key: KeyDetail, now: datetime, refusal: SeenRefusal | None = None) -> Fields:
    """`keys usage`: where the key stands against its limit, by the server's figures.

    A refusal tokenbot saw from the proxy in the current period wins over a figure that says
    there is room left.
    """
    rows = [("status", key_status(key, now)), ("usage (lifetime)", usd(key.usage))]
    if key.credit_limit is not None:
        used = key.period_usage()
        left = max(key.credit_limit - used, Decimal(0))
        period = key.limit_reset or "lifetime"
        rows.append((f"used ({period}, {_SERVER})", f"{usd(used)} of {usd(key.credit_limit)}"))
        if refusal is not None and refusal.holds(key, now):
            rows.append(("left", refusal.text()))
        else:
            rows.append((f"left ({_SERVER})", usd(left)))
        if key.limit_reset:
            rows.append(("resets", f"{next_reset(key.limit_reset, now):%Y-%m-%d %H:%M} UTC"))
    else:
        rows.append(("credit limit", _UNLIMITED))
    rows += [
        (
            f"today / week / month ({_SERVER}s)",
            f"{usd(key.usage_daily)} / {usd(key.usage_weekly)} / {usd(key.usage_monthly)}",
        ),
        (f"requests ({_SERVER})", f"{key.requests_count:,}"),
    ]
    if placeholder_breakdown(key):
        rows.append(
            (
                "note",
                "the daily/weekly/monthly figures and request count are shares "
                "of lifetime usage, not measurements",
            )
        )
    return Fields(title=f"Usage of {key.name} ({key.hash})", rows=rows)


def keys_table(keys: Sequence[ProvisionedKey], revoked: Iterable[str] = ()) -> list[Fields | Text]:
    """`keys list`: one row per key (and, when revoked keys were inferred, how)."""
    if not keys:
        return [
            Text(markdown="No keys match. Create one with `/openclaw-token keys create --name …`.")
        ]
    gone = set(revoked)
    table = Fields(
        title=f"{len(keys)} key(s)",
        rows=[
            (
                k.name,
                f"{k.hash} · {usd(k.usage)} used · {limit_text(k)} · {key_status(k, revoked=gone)}",
            )
            for k in keys
        ],
    )
    if any(k.hash in gone and not (k.revoked or k.revoked_at) for k in keys):
        return [table, Text(markdown=_REVOKED_NOTE)]
    return [table]


def apply_filter(
    keys: Iterable[ProvisionedKey], wanted: KeyFilter | None, revoked: Iterable[str] = ()
) -> list[ProvisionedKey]:
    """Keep the keys matching `active`, `disabled` or `usage<op>N`."""
    items = list(keys)
    if wanted is None:
        return items
    if wanted.kind == "active":
        gone = set(revoked)
        return [k for k in items if key_status(k, revoked=gone) == "active"]
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
    "KEY_NOT_FOUND": f"Check the hash with `{_CMD} keys list`; the server also answers "
    f"“not found” for a revoked key (`{_CMD} keys list --include-revoked` lists those).",
    "KEY_ALREADY_REVOKED": "Nothing to do: that key was already revoked.",
    "KEY_REVOKED": f"That key is revoked for good: create a new one with `{_CMD} keys create`.",
    "KEY_EXPIRED": f"That key has expired: create a new one with `{_CMD} keys create`.",
    "CONFLICT": f"This request conflicts with an earlier one; run `{_CMD} credits buy` again for a new quote.",
    "PAYLOAD_TOO_LARGE": "The request is over 1 MB; send less text.",
    "UPSTREAM_UNREACHABLE": "The OpenClaw Token proxy could not reach the model provider; try again shortly.",
    "upstream_insufficient_balance": "Buying OpenClaw Token credits will not help: tell whoever "
    "runs that OpenClaw Token server to top up its provider account, then try again.",
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
