"""The saved state of OpenMarlin's durable jobs (see bot.core.job_state).

Version 1 keeps the keys the untyped states had, so rows written before (version 0) load as
they are. The task handlers read `task_id` from the raw row: rename it only with an upgrade
step and with that reader.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field

from bot.core.job_state import JobState
from bot.core.messages import MessageRef


class RegistrationState(JobState):
    """A registration: the session, its short-lived device code, whether the key is stored."""

    version: int = 1
    auth_flow: Literal["device", "workos_callback"] = "device"
    session_id: str | None = None
    # Cleared once the key is stored or the session ends: they can mint the key.
    device_code: str | None = None
    callback_state: str | None = None
    expires_at: str | None = None
    # The key was stored: the server shows it once, so a restart must not bootstrap again.
    stored: bool = False

    @property
    def request_id(self) -> str | None:
        """OpenMarlin's registration session id."""
        return self.session_id


class TaskState(JobState):
    """A long task: its input, its id once submitted, the last status shown."""

    version: int = 1
    prompt: str = ""
    duration_ms: int | None = None
    aspect_ratio: str | None = None
    # Routing hints the user gave, which tasks do not take (said in the progress message).
    ignored: list[str] = Field(default_factory=list)
    conversation_key: str | None = None
    # Set before the POST: no idempotency key, so a restart without a task id must not resend.
    submit_started: bool = False
    task_id: str | None = None
    last_status: str | None = None
    progress_ref: MessageRef | None = None
    # Whose key pays ("workspace": the admins'), the budget hold taken at submit and its
    # estimate; written only when set, so own-key, uncapped rows are as they always were.
    key_source: Literal["own", "workspace"] = "own"
    spend_hold: str | None = None
    spend_estimate: Decimal | None = None

    @property
    def request_id(self) -> str | None:
        """OpenMarlin's task id."""
        return self.task_id


class TopUpState(JobState):
    """A top-up: the amount, and the session id once created."""

    version: int = 1
    amount: Decimal = Field(gt=0)
    topup_id: str | None = None

    @property
    def request_id(self) -> str | None:
        """OpenMarlin's top-up session id."""
        return self.topup_id
