"""Typed OpenMarlin commands (what the grammar produces) and their specs.

`SPECS` declares each command once (usage line, description, typed options, privacy, help
topic); usage errors and `/openmarlin help` read it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bot.core.command_spec import CommandSpec, OptionSpec, usage_lines
from bot.core.grammar import UsageError

FAMILY = "openmarlin"
ROUTING_HINT = "[with model vendor/model] [on provider ID] [with labels k=v,…]"
# The umbrella line, for problems with `/openmarlin <text>` as a whole.
UMBRELLA = "openmarlin"
UMBRELLA_USAGE = (
    "/openmarlin <what to do> "
    + ROUTING_HINT
    + " | register | status | models | balance | activity | top up <amount> | referral link"
    " | task status <id> | key | help"
    " (a request that starts with one of these words is that command; write `to` first to run"
    " it as a paid instruction: /openmarlin to status report …)"
)


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


# --- specs -----------------------------------------------------------------------------------


def _text(
    name: str, description: str, *, positional: bool = False, required: bool = False
) -> OptionSpec:
    return OptionSpec(name=name, description=description, required=required, positional=positional)


_ROUTING_OPTIONS = (
    _text("model", "Exact model ref, vendor/model (see /openmarlin models)"),
    _text("provider", "Provider id to run on"),
    _text("labels", "Routing labels, k=v,k2=v2"),
)

SPECS: tuple[CommandSpec, ...] = (
    CommandSpec(
        family=FAMILY,
        name="openmarlin.execute",
        path=("openmarlin", "run"),
        usage="use openmarlin to <instruction> " + ROUTING_HINT,
        description="An OpenMarlin execution, streamed (steer it with a model, provider, labels)",
        options=(
            _text("instruction", "What OpenMarlin should do", positional=True, required=True),
            *_ROUTING_OPTIONS,
        ),
        topic="run",
        model=OMExecute,
        examples=(
            "use openmarlin to summarise this thread with model openai-codex/gpt-5.4",
            "/openmarlin to status report of Q3",
        ),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.task",
        path=("openmarlin", "task", "start"),
        usage="use openmarlin to generate a video of <prompt> "
        "[--duration=5s] [--aspect-ratio=16:9|9:16|1:1] [--sync to run it as an execution]",
        description="A long task (video, rendering, background work), watched until done",
        options=(
            _text("prompt", "What to make", positional=True, required=True),
            _text("duration", "Length, e.g. 5s (1 s to 600 s)"),
            OptionSpec(
                name="aspect-ratio",
                kind="choice",
                description="Aspect ratio",
                choices=("16:9", "9:16", "1:1"),
            ),
        ),
        topic="run",
        model=OMTask,
        examples=("use openmarlin to generate a video of a fox --duration=5s --aspect-ratio=9:16",),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.register",
        path=("openmarlin", "register"),
        usage="/openmarlin register [browser]",
        description="Sign up: the sign-in link comes to you privately",
        options=(
            OptionSpec(
                name="browser", kind="bool", description="Sign in through a browser callback"
            ),
        ),
        private=True,
        topic="account",
        model=OMRegister,
        examples=(
            "/openmarlin register",
            "register OpenMarlin",
            "sign up for OpenMarlin",
            "/openmarlin register browser",
        ),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.status",
        path=("openmarlin", "status"),
        usage="/openmarlin status",
        description="Your key and registration status",
        private=True,
        topic="account",
        model=OMStatus,
        examples=("/openmarlin status", "show my OpenMarlin status"),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.key",
        path=("openmarlin", "key"),
        usage="/openmarlin key [set claw_wsk_… | remove | status]",
        description="Store an existing key privately, check it or remove it",
        options=(
            OptionSpec(
                name="action",
                kind="choice",
                description="Leave empty to enter your key in a private form",
                choices=("set", "remove", "status"),
            ),
            OptionSpec(name="key", description="Your OpenMarlin key (claw_wsk_…)", secret=True),
        ),
        private=True,
        topic="account",
        model=OMKey,
        examples=("/openmarlin key remove", "/openmarlin key"),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.models",
        path=("openmarlin", "models"),
        usage="/openmarlin models [filter]",
        description="Models with their providers and labels",
        options=(_text("filter", "Only refs containing this text", positional=True),),
        topic="models",
        model=OMModels,
        examples=("/openmarlin models gpt", "use openmarlin models", "list OpenMarlin models"),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.balance",
        path=("openmarlin", "balance"),
        usage="/openmarlin balance",
        description="Your balance (the last known one if the server can't say)",
        private=True,
        topic="billing",
        model=OMBalance,
        examples=("/openmarlin balance", "check OpenMarlin balance", "OpenMarlin balance"),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.activity",
        path=("openmarlin", "activity"),
        usage="/openmarlin activity",
        description="Recent usage and ledger entries",
        private=True,
        topic="billing",
        model=OMActivity,
        examples=("/openmarlin activity", "show OpenMarlin activity"),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.topup",
        path=("openmarlin", "topup"),
        usage="/openmarlin top up <amount>",
        description="A top-up: the checkout link comes privately, then the new balance",
        options=(_text("amount", "Credits to add, e.g. 10", positional=True, required=True),),
        private=True,
        topic="billing",
        model=OMTopUp,
        examples=(
            "/openmarlin top up 10",
            "use openmarlin to top up 3",
            "top up OpenMarlin 3",
            "OpenMarlin top up 3",
        ),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.referral",
        path=("openmarlin", "referral"),
        usage="/openmarlin referral link",
        description="Your referral code and invite link",
        private=True,
        topic="billing",
        model=OMReferral,
        examples=("/openmarlin referral link",),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.task_status",
        path=("openmarlin", "task", "status"),
        usage="/openmarlin task status <task id>",
        description="Look at (and keep watching) a task",
        options=(_text("task_id", "The task's id", positional=True, required=True),),
        topic="run",
        model=OMTaskStatus,
        examples=("/openmarlin task status task_123",),
    ),
    CommandSpec(
        family=FAMILY,
        name="openmarlin.help",
        path=("openmarlin", "help"),
        usage="/openmarlin help",
        description="What the OpenMarlin commands are",
        topic="help",
        model=OMHelp,
        examples=("/openmarlin help", "/openmarlin"),
    ),
)

# Usage lines by command name (and the umbrella's): what usage errors carry.
USAGE: dict[str, str] = {UMBRELLA: UMBRELLA_USAGE, **usage_lines(SPECS)}


def usage_error(command: str, problem: str) -> UsageError:
    """A UsageError for an OpenMarlin command, carrying its usage line (else the umbrella's)."""
    return UsageError(command, problem, USAGE.get(command, UMBRELLA_USAGE))
