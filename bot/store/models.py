"""Row models for the store: what callers pass in and get back (never raw SQL rows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, Protocol, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

# "quarantined": an unfinished row that could not be resumed (unreadable, unknown kind);
# kept for the operator, never run.
JobStatus = Literal[
    "pending", "running", "delivering", "done", "failed", "cancelled", "quarantined"
]
JOB_STATUSES: frozenset[str] = frozenset(get_args(JobStatus))
# A job in one of these states still has work to do (or to resume after a restart).
UNFINISHED_STATUSES: frozenset[str] = frozenset({"pending", "running", "delivering"})


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # Naive datetimes are taken to be UTC (what datetime.utcnow() produces) rather than
    # rejected, so every stored time is comparable; aware ones are converted to UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


def period_bounds(now: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    """The UTC budget periods around `now`: (day start, month start, next day, next month)."""
    day = _as_utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    if month.month == 12:
        next_month = month.replace(year=month.year + 1, month=1)
    else:
        next_month = month.replace(month=month.month + 1)
    return day, month, day + timedelta(days=1), next_month


def iso(value: datetime) -> str:
    """Storage form of a time: fixed-width ISO-8601 UTC with microseconds, so text sorts by time."""
    return _as_utc(value).isoformat(timespec="microseconds")


def from_iso(text: str) -> datetime:
    """Inverse of `iso`."""
    return _as_utc(datetime.fromisoformat(text))


def epoch(value: datetime) -> float:
    """Epoch seconds of a time (a naive one taken as UTC, like every stored time)."""
    return _as_utc(value).timestamp()


class _Row(BaseModel):
    # Frozen: a record is a snapshot of a row; change rows through the Store, not the object.
    model_config = ConfigDict(frozen=True, extra="forbid")


class _HasOwnerFields(Protocol):
    # Read-only properties so Inbound/Destination (Literal platform, frozen) both conform.
    @property
    def platform(self) -> str: ...
    @property
    def workspace(self) -> str: ...
    @property
    def user(self) -> str: ...


class Owner(_Row):
    """Who a row belongs to: one user in one workspace of one platform."""

    platform: str = Field(min_length=1)
    workspace: str = Field(min_length=1)
    user: str = Field(min_length=1)

    @classmethod
    def of(cls, source: _HasOwnerFields) -> Owner:
        """The owner of an `Inbound` or `Destination` (anything with platform/workspace/user)."""
        return cls(platform=source.platform, workspace=source.workspace, user=source.user)


class CredentialInfo(_Row):
    """What may be shown about a stored credential; never the secret itself."""

    service: str
    # "…" plus the secret's last 4 characters (just "…" for secrets under 12 characters).
    fingerprint: str
    created_at: UtcDatetime
    updated_at: UtcDatetime
    meta: dict[str, str] = Field(default_factory=dict)
    # False when the stored ciphertext no longer decrypts (the master key changed): the
    # credential exists but every use fails until it is set again.
    readable: bool = True


class UsageRecord(_Row):
    """One billed call in the usage ledger."""

    owner: Owner
    service: str
    command: str
    model: str | None = None
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    # Exact decimal (accepts "0.0000188" or Decimal); stored as TEXT, never as a float.
    cost_usd: Decimal | None = None
    request_id: str | None = None
    conversation_key: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)


class LastCall(_Row):
    """The last AllToken call of one user in one conversation (for /alltoken-cost)."""

    command: str
    model: str | None = None
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cost_usd: Decimal | None = None
    # USD per 1K tokens, exact decimals as the gateway sends them (e.g. "0.0002000000").
    input_price: Decimal | None = None
    output_price: Decimal | None = None
    request_id: str | None = None
    at: UtcDatetime = Field(default_factory=utcnow)


class JobRecord(_Row):
    """A durable unit of long work (image, video, task, sign-in, ...)."""

    id: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    owner: Owner
    # Where to reply: a `bot.core.messages.Destination` dumped to JSON (a model is dumped for you).
    destination: dict[str, Any]
    # Phase data: idempotency key, backend task id, saved file path, ... (JSON-serialisable).
    state: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus = "pending"
    attempts: int = Field(0, ge=0)
    error: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)
    # Epoch seconds (compare with time.time()); None means "run whenever".
    next_run_at: float | None = None
    # The replica (tokenbot process) running the job, and until when (epoch seconds) its
    # claim holds unless renewed; None: nobody holds it, any replica may claim it.
    claimed_by: str | None = None
    lease_until: float | None = None

    @field_validator("destination", mode="before")
    @classmethod
    def _dump_model(cls, value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        return value


class JobMedia(_Row):
    """A job's one-shot result bytes (an AllToken image), kept in the store until delivered."""

    mime: str
    data: bytes


class AuditEntry(_Row):
    """Who ran what and how it ended. Text is redacted of key-shaped strings when stored."""

    owner: Owner
    command: str
    outcome: str  # "ok" | "usage_error" | "failed" | "denied" | ...
    detail: str | None = None
    request_id: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)


# Where a ledger row's cost comes from: the backend's own report (AllToken's SSE cost line),
# OpenMarlin's settlement, OpenClaw Token's charge, or the catalog price when none said.
CostSource = Literal["reported", "settlement", "charge", "estimate"]
# Whose key paid: the caller's own, or the workspace key an admin set.
KeySource = Literal["own", "workspace"]
# The pseudo-user a workspace key is stored under (no Slack or Discord user id has a "*").
WORKSPACE_USER = "*workspace*"


class LedgerEntry(_Row):
    """One charged call: who, where, which backend and model, and what it cost. Never prompt text."""

    owner: Owner
    channel: str = ""
    service: str
    command: str
    model: str | None = None
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
    cost_usd: Decimal = Field(ge=0, allow_inf_nan=False)
    cost_source: CostSource
    key_source: KeySource = "own"
    request_id: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)


class SpendSnapshot(_Row):
    """The capped spend a budget decision sees: settled ledger rows plus open holds, in USD."""

    user_day_usd: Decimal
    user_month_usd: Decimal
    workspace_month_usd: Decimal


class SpendHoldRecord(_Row):
    """A reservation of estimated cost, held while a call or job runs, until settled or released."""

    id: str = Field(min_length=1)
    owner: Owner
    service: str
    command: str
    amount_usd: Decimal = Field(ge=0, allow_inf_nan=False)
    key_source: KeySource
    # Epoch seconds after which the hold no longer counts (its job is taken to have died).
    expires_epoch: float = 0.0
