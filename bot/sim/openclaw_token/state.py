"""State of the OpenClaw Token simulator: accounts, the credits ledger, provisioned keys.

Plain data plus the rules that act on it (metering, limits, auto top-up); no HTTP here.
Money is Decimal throughout; JSON views turn it into numbers as the server does.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
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
        """The key as GET /keys lists it (the value only on create and rotate)."""
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
        if self.revoked_at is not None:
            body["revoked"] = True
            body["revoked_at"] = iso(self.revoked_at)
        if with_value:
            body["key"] = self.value
        return body

    def detail(self, now: float) -> dict[str, Any]:
        """GET /keys/:hash: the view plus the usage breakdown."""
        per_model: dict[str, dict[str, Any]] = {}
        for event in self.events:
            row = per_model.setdefault(
                event.model, {"model": event.model, "requests": 0, "tokens": 0, "cost": Decimal(0)}
            )
            row["requests"] += 1
            row["tokens"] += event.tokens
            row["cost"] += event.cost
        return {
            **self.view(),
            "usage_daily": num(self.usage_in("daily", now)),
            "usage_weekly": num(self.usage_in("weekly", now)),
            "usage_monthly": num(self.usage_in("monthly", now)),
            "requests_count": len(self.events),
            "model_usage": [{**row, "cost": num(row["cost"])} for row in per_model.values()],
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
    """Top up `amount` when the balance drops below `threshold`."""

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
        """Meter one proxy request against the key and the account, then maybe auto top up."""
        key.events.append(event)
        self.total_usage += event.cost
        self.record("usage", -event.cost, f"{event.model} via key {key.name}", event.at)
        topup = self.auto_topup
        if topup.enabled and self.remaining < topup.threshold:
            self.add_credits("auto_topup", topup.amount, "Automatic top-up", event.at)

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
