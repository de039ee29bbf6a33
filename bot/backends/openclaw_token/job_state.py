"""The saved state of OpenClaw Token's durable jobs (see bot.core.job_state).

Version 1 keeps the keys the untyped states had, so rows written before (version 0) load as
they are. The Stop button reads `hash` and `progress_ref` from the raw row: rename them only
with an upgrade step and with that reader.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from bot.core.job_state import JobState
from bot.core.messages import MessageRef


class DeviceLoginState(JobState):
    """A GitHub device-flow sign-in: the device code and the current poll interval."""

    version: int = 1
    device_code: str | None = Field(None, repr=False)
    user_code: str | None = None
    verification_uri: str | None = None
    # Seconds between polls; raised when GitHub answers slow_down.
    interval: float | None = None
    # Epoch seconds.
    expires_at: float | None = None


class PurchaseState(JobState):
    """A confirmed credits purchase: resent with the same Idempotency-Key after a restart."""

    version: int = 1
    amount: Decimal = Field(gt=0)
    idempotency_key: str


class UsageWatchState(JobState):
    """A `keys usage --watch`: which key, how often, and the live message."""

    version: int = 1
    hash: str
    interval: float = 5
    progress_ref: MessageRef | None = None
