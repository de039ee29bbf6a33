"""State of the OpenClaw Token simulator: accounts, the credits ledger, provisioned keys.

Plain data plus the rules that act on it (metering, limits, auto top-up); no HTTP here.
Money is Decimal throughout; JSON views turn it into numbers as the server does.

As loose as the real server (openclaw-token-server, src/routes/keys.ts, proxy.ts, usage.ts):
a key list carries no revoked flag, a key's daily/weekly/monthly usage, request count and
per-model rows are placeholders derived from its lifetime usage (the spend limit itself is
checked against the real per-period usage), metered proxy usage writes no credits history row,
and auto top-up runs before a proxy request whenever the balance is at or below the threshold,
$0 included, without any payment.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, cast

from bot.backends.openclaw_token.service import LimitReset, next_reset, period_start
from bot.sim.serving import SimHttpError

DEMO_EMAIL = "demo@openclaw.dev"
DEMO_PASSWORD = "Demo1234!"
DEMO_MGMT_KEY = "sk-mgmt-de000000-0000-0000-0000-000000000000"
DEMO_CREDITS = Decimal(100)
LIMIT_RESETS: tuple[LimitReset, ...] = ("daily", "weekly", "monthly")
HISTORY_TYPES = ("purchase", "usage", "refund", "auto_topup")
_PBKDF2_ROUNDS = 20_000
AUTO_TOPUP_DESCRIPTION = "Auto top-up (placeholder — no payment)"
# The real GET /keys/:hash breakdown: fixed shares of lifetime usage, two invented model rows.
_PLACEHOLDER_MODELS = (("claude-sonnet-4-5", Decimal("0.55")), ("gpt-4o", Decimal("0.45")))


class SimError(SimHttpError):
    """Rendered by the simulator as `{"error": {"code", "message"}}` with `status`."""


def iso(ts: float) -> str:
    """Unix seconds as ISO-8601 UTC with a Z."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def num(value: Decimal | None) -> float | None:
    """A JSON number for a Decimal amount."""
    return None if value is None else float(value)


def new_management_key() -> str:
    """sk-mgmt-<uuid4>."""
    return f"sk-mgmt-{uuid.uuid4()}"


def new_provisioned_key() -> str:
    """sk-prov-<32 hex>."""
    return f"sk-prov-{secrets.token_hex(16)}"


def key_hash(value: str) -> str:
    """The public id of a provisioned key: the first 16 hex of its sha256."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def cents(value: Decimal) -> Decimal:
    """JavaScript's Math.round(value * 100) / 100 (half up) for a non-negative amount."""
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def floor_int(value: Decimal) -> int:
    """Math.floor for a non-negative amount."""
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _derive(password: str, salt: bytes) -> bytes:
    # Only a salted hash is kept: the simulator never holds a password in clear.
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt, _PBKDF2_ROUNDS)


@dataclass
class UsageEvent:
    """One metered proxy request."""

    at: float
    model: str
    tokens: int
    cost: Decimal


@dataclass
class ProvKey:
    """A provisioned key and its metering."""

    hash: str
    value: str
    name: str
    created_at: float
    credit_limit: Decimal | None = None
    limit_reset: LimitReset | None = None
    expires_at: float | None = None
    disabled: bool = False
    revoked_at: float | None = None
    events: list[UsageEvent] = field(default_factory=list)

    @property
    def usage(self) -> Decimal:
        """Lifetime usage in USD."""
        return sum((e.cost for e in self.events), Decimal(0))

    def usage_since(self, since: float) -> Decimal:
        """Usage from `since` (unix seconds) on."""
        return sum((e.cost for e in self.events if e.at >= since), Decimal(0))

    def usage_in(self, period: LimitReset, now: float) -> Decimal:
        """Usage in the calendar period (UTC) containing `now`."""
        start = period_start(period, datetime.fromtimestamp(now, UTC))
        return self.usage_since(start.timestamp())

    def limited_usage(self, now: float) -> Decimal:
        """The usage the credit limit applies to: this period's, or lifetime without a reset."""
        return self.usage_in(self.limit_reset, now) if self.limit_reset else self.usage

    def resets_at(self, now: float) -> float | None:
        """When the limit's period rolls over (None without a reset period)."""
        if not self.limit_reset:
            return None
        return next_reset(self.limit_reset, datetime.fromtimestamp(now, UTC)).timestamp()

    def expired(self, now: float) -> bool:
        """Past its expiry time."""
        return self.expires_at is not None and now >= self.expires_at

    def view(self, *, with_value: bool = False) -> dict[str, Any]:
        """The key as GET /keys lists it: no revoked flag, even with include_revoked=true."""
        body: dict[str, Any] = {
            "hash": self.hash,
            "name": self.name,
            "credit_limit": num(self.credit_limit),
            "limit_reset": self.limit_reset,
            "usage": num(self.usage),
            "disabled": self.disabled,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at) if self.expires_at is not None else None,
        }
        if with_value:
            body["key"] = self.value
        return body

    def detail(self, now: float) -> dict[str, Any]:
        """GET /keys/:hash: the view plus the real server's placeholder usage breakdown.

        Only `usage` is measured; the rest is derived from it as the server does
        (daily 15 %, weekly 45 %, monthly 100 %, 100 requests per dollar, two fixed models).
        """
        usage = self.usage
        return {
            **self.view(),
            "usage_daily": num(cents(usage * Decimal("0.15"))),
            "usage_weekly": num(cents(usage * Decimal("0.45"))),
            "usage_monthly": num(usage),
            "requests_count": floor_int(usage * 100),
            "model_usage": [
                {
                    "model": model,
                    "requests": floor_int(usage * 50),
                    "tokens": floor_int(usage * 5000),
                    "cost": num(cents(usage * share)),
                }
                for model, share in _PLACEHOLDER_MODELS
            ],
        }


@dataclass
class Txn:
    """One credits history item."""

    id: str
    type: str
    amount: Decimal
    balance_after: Decimal
    description: str
    created_at: float

    def view(self) -> dict[str, Any]:
        """As GET /credits/history lists it."""
        return {
            "id": self.id,
            "type": self.type,
            "amount": num(self.amount),
            "balance_after": num(self.balance_after),
            "description": self.description,
            "created_at": iso(self.created_at),
        }


@dataclass
class AutoTopupSettings:
    """Top up `amount` when a proxy request finds the balance at or below `threshold`."""

    enabled: bool = False
    threshold: Decimal = Decimal(5)
    amount: Decimal = Decimal(25)

    def view(self) -> dict[str, Any]:
        """The JSON form."""
        return {
            "enabled": self.enabled,
            "threshold": num(self.threshold),
            "amount": num(self.amount),
        }


@dataclass
class Account:
    """One OpenClaw Token account."""

    email: str
    management_key: str
    created_at: float
    salt: bytes = field(default_factory=lambda: secrets.token_bytes(16), repr=False)
    password_hash: bytes | None = field(default=None, repr=False)
    plan: str = "free"
    total_credits: Decimal = Decimal(0)
    total_usage: Decimal = Decimal(0)
    last_login: float | None = None
    github_name: str | None = None
    auto_topup: AutoTopupSettings = field(default_factory=AutoTopupSettings)
    keys: dict[str, ProvKey] = field(default_factory=dict)
    history: list[Txn] = field(default_factory=list)

    def set_password(self, password: str) -> None:
        """Keep only a salted hash."""
        self.password_hash = _derive(password, self.salt)

    def password_matches(self, password: str) -> bool:
        """Constant-time check."""
        if self.password_hash is None:
            return False
        return hmac.compare_digest(self.password_hash, _derive(password, self.salt))

    @property
    def remaining(self) -> Decimal:
        """Credits left."""
        return self.total_credits - self.total_usage

    def live_keys(self) -> list[ProvKey]:
        """Keys not revoked."""
        return [k for k in self.keys.values() if k.revoked_at is None]

    def record(self, type_: str, amount: Decimal, description: str, now: float) -> Txn:
        """Append a ledger entry; credits are positive, usage negative."""
        txn = Txn(
            id=f"txn_{secrets.token_hex(8)}",
            type=type_,
            amount=amount,
            balance_after=self.remaining,
            description=description,
            created_at=now,
        )
        self.history.append(txn)
        return txn

    def add_credits(self, type_: str, amount: Decimal, description: str, now: float) -> Txn:
        """A purchase, refund or auto top-up."""
        self.total_credits += amount
        return self.record(type_, amount, description, now)

    def charge(self, key: ProvKey, event: UsageEvent) -> None:
        """Meter one proxy request against the key and the account (no history row)."""
        key.events.append(event)
        self.total_usage += event.cost

    def auto_topup_before_request(self, now: float) -> Txn | None:
        """The proxy's pre-check: at or below the threshold ($0 included), add credits unpaid."""
        topup = self.auto_topup
        if not topup.enabled or self.remaining > topup.threshold:
            return None
        return self.add_credits("auto_topup", topup.amount, AUTO_TOPUP_DESCRIPTION, now)

    def me(self) -> dict[str, Any]:
        """GET /auth/me."""
        return {
            "email": self.email,
            "plan": self.plan,
            "credits_remaining": num(self.remaining),
            "keys_count": len(self.live_keys()),
            "created_at": iso(self.created_at),
        }

    def credits(self) -> dict[str, Any]:
        """GET /credits."""
        return {
            "total_credits": num(self.total_credits),
            "total_usage": num(self.total_usage),
            "remaining": num(self.remaining),
        }


def demo_account(now: float) -> Account:
    """The seed's demo account: $100, plan free, auto top-up off (5 / 25)."""
    account = Account(email=DEMO_EMAIL, management_key=DEMO_MGMT_KEY, created_at=now)
    account.set_password(DEMO_PASSWORD)
    account.add_credits("purchase", DEMO_CREDITS, "Demo credits", now)
    return account


def parse_limit_reset(value: Any) -> LimitReset | None:
    """null or one of daily/weekly/monthly (INVALID_INPUT otherwise)."""
    if value is None:
        return None
    if value not in LIMIT_RESETS:
        raise SimError(400, "INVALID_INPUT", "limit_reset must be daily, weekly or monthly")
    return cast(LimitReset, value)


def parse_money(value: Any, name: str, *, minimum: Decimal, allow_null: bool = False) -> Any:
    """A JSON number ≥ minimum as Decimal (None when allowed and null)."""
    if value is None and allow_null:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SimError(400, "INVALID_INPUT", f"{name} must be a number")
    amount = Decimal(str(value))
    if amount < minimum or not amount.is_finite():
        raise SimError(400, "INVALID_INPUT", f"{name} must be at least {minimum}")
    return amount


def parse_time(value: Any, name: str) -> float | None:
    """null or an ISO-8601 time (a bare date means its end, UTC) as unix seconds."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SimError(400, "INVALID_INPUT", f"{name} must be an ISO-8601 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise SimError(400, "INVALID_INPUT", f"{name} must be an ISO-8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
