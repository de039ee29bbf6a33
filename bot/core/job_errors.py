"""How a job's own code ends it early: cancelled by its owner, failed, or out of time.

The runner (bot.core.jobs) catches these, records the row's end and tells the user.
"""

from __future__ import annotations

from bot.core.messages import Failure


class JobCancelled(Exception):
    """Raised inside a job when its owner cancelled it."""


class JobFailed(Exception):
    """A job ended without a result; `failure` is what the user is told."""

    # How the job's end is audited.
    outcome = "failed"

    def __init__(self, failure: Failure) -> None:
        self.failure = failure
        super().__init__(f"{failure.code}: {failure.message}")


class JobExpired(JobFailed):
    """A job ran out of time (its deadline, or the backend's expiry): audited as `expired`."""

    outcome = "expired"
