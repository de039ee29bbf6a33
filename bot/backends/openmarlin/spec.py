"""Typed OpenMarlin commands (what the router produces) and their usage lines."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bot.backends.alltoken.spec import UsageError

ROUTING_HINT = "[with model vendor/model] [on provider ID] [with labels k=v,…]"
USAGE: dict[str, str] = {
    "openmarlin": "/openmarlin <what to do> "
    + ROUTING_HINT
    + " | register | status | models | balance | activity | top up <amount> | referral link"
    " | task status <id> | key | help"
    " (a request that starts with one of these words is that command; write `to` first to run"
    " it as a paid instruction: /openmarlin to status report …)",
    "openmarlin.execute": "use openmarlin to <instruction> " + ROUTING_HINT,
    "openmarlin.task": "use openmarlin to generate a video of <prompt> "
    "[--duration=5s] [--aspect-ratio=16:9|9:16|1:1] [--sync to run it as an execution]",
    "openmarlin.register": "/openmarlin register [browser]",
    "openmarlin.status": "/openmarlin status",
    "openmarlin.balance": "/openmarlin balance",
    "openmarlin.activity": "/openmarlin activity",
    "openmarlin.referral": "/openmarlin referral link",
    "openmarlin.models": "/openmarlin models [filter]",
    "openmarlin.topup": "/openmarlin top up <amount>",
    "openmarlin.task_status": "/openmarlin task status <task id>",
    "openmarlin.key": "/openmarlin key [set claw_wsk_… | remove | status]",
}


class OpenMarlinUsageError(UsageError):
    """Bad input for an OpenMarlin command; carries that command's usage line."""

    def __init__(self, command: str, problem: str) -> None:
        super().__init__(command, problem)
        self.usage = USAGE.get(command, USAGE["openmarlin"])
        self.args = (f"{problem} — usage: {self.usage}",)


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True)


class OMRegister(_Command):
    """Create a registration session and watch it until the key is stored."""

    kind: Literal["openmarlin.register"] = "openmarlin.register"
    auth_flow: Literal["device", "workos_callback"] = "device"


class OMStatus(_Command):
    """Registration and key status."""

    kind: Literal["openmarlin.status"] = "openmarlin.status"


class OMModels(_Command):
    """Exact model refs with their providers and labels."""

    kind: Literal["openmarlin.models"] = "openmarlin.models"
    filter: str = ""


class OMBalance(_Command):
    """The workspace balance (last known snapshot when the server can't say)."""

    kind: Literal["openmarlin.balance"] = "openmarlin.balance"


class OMActivity(_Command):
    """Recent usage events and ledger entries."""

    kind: Literal["openmarlin.activity"] = "openmarlin.activity"


class OMTopUp(_Command):
    """Start a top-up of `amount` credits."""

    kind: Literal["openmarlin.topup"] = "openmarlin.topup"
    amount: Decimal = Field(gt=0, le=100_000)


class OMReferral(_Command):
    """The caller's referral code and invite link."""

    kind: Literal["openmarlin.referral"] = "openmarlin.referral"


class OMTaskStatus(_Command):
    """Look at (and keep watching) one task."""

    kind: Literal["openmarlin.task_status"] = "openmarlin.task_status"
    task_id: str = Field(min_length=1, max_length=200)


class OMExecute(_Command):
    """POST /v1/executions with optional routing hints."""

    kind: Literal["openmarlin.execute"] = "openmarlin.execute"
    instruction: str = Field(min_length=1)
    model: str | None = None
    provider_id: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class OMTask(_Command):
    """POST /v1/tasks (video) and watch it; routing hints the user gave are listed in `ignored`."""

    kind: Literal["openmarlin.task"] = "openmarlin.task"
    prompt: str = Field(min_length=1)
    duration_ms: int | None = Field(None, ge=1000, le=600_000)
    aspect_ratio: str | None = None
    ignored: tuple[str, ...] = ()


class OMKey(_Command):
    """Store (privately), inspect or remove an existing OpenMarlin key."""

    kind: Literal["openmarlin.key"] = "openmarlin.key"
    action: Literal["prompt", "set", "remove", "status"]
    key: SecretStr | None = None


class OMHelp(_Command):
    """What the OpenMarlin commands are."""

    kind: Literal["openmarlin.help"] = "openmarlin.help"


OpenMarlinCommand = (
    OMRegister
    | OMStatus
    | OMModels
    | OMBalance
    | OMActivity
    | OMTopUp
    | OMReferral
    | OMTaskStatus
    | OMExecute
    | OMTask
    | OMKey
    | OMHelp
)
