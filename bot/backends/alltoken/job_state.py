"""The saved state of AllToken's durable image and video jobs (see bot.core.job_state).

Version 1 keeps the keys the untyped states had, so rows written before (version 0) load as
they are. The handlers and the Cancel button read some keys from the raw row (`task_id`,
`submit_started`, `progress_ref`, `cancel_requested`): rename those only with an upgrade step
and with those readers.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import Field

from bot.core.job_state import JobState
from bot.core.messages import MessageRef


class AllTokenJobState(JobState):
    """What the image and video states share: the prompt, the task id, the progress message."""

    prompt: str
    model: str
    # The conversation the command came from ("how much did that cost" there).
    conversation_key: str | None = None
    # The progress message, posted once and then edited.
    progress_ref: MessageRef | None = None
    # AllToken's task id, saved as soon as the submit answers: from then on a restart polls.
    task_id: str | None = None
    # Whose key pays ("workspace": the admins' key, no key of the user's own), the budget
    # hold taken at submit and its estimate. Written only when set, so a row of an own-key,
    # uncapped job is what a replica without budgets writes and reads.
    key_source: Literal["own", "workspace"] = "own"
    spend_hold: str | None = None
    spend_estimate: Decimal | None = None

    @property
    def request_id(self) -> str | None:
        """AllToken's task id."""
        return self.task_id


class ImageState(AllTokenJobState):
    """An image job: submitted with an Idempotency-Key, its one-shot bytes kept, then posted."""

    version: int = 1
    size: str
    quality: str
    # Sent with every submit of this image, so a resend after a time-out cannot bill twice.
    idempotency_key: str
    # Where the completed image's bytes are (the images dir, or a temporary copy).
    file: str | None = None
    # The bytes themselves, base64, when the images dir refused them (cleared once posted).
    image_b64: str | None = None
    save_problem: str | None = None
    mime: str | None = None
    r2_url: str | None = None
    # As AllToken sent it: ISO text or epoch seconds/milliseconds.
    r2_expires_at: str | int | float | None = None
    usage: dict[str, Any] = Field(default_factory=dict)
    revised_prompt: str | None = None
    uploaded: bool = False


class VideoState(AllTokenJobState):
    """A video job: posted once (no idempotency key), polled, then linked."""

    version: int = 1
    duration: int
    ratio: str
    resolution: str
    # Set before the POST: after a crash with no task id the task is looked for, not resent.
    submit_started: bool = False
    # Set by the Cancel button while the POST is in flight; the job cancels once it has an id.
    cancel_requested: bool = False
    # Tasks not to adopt as this job's after a crash mid-submit (someone else's, or older).
    seen_ids: list[str] = Field(default_factory=list)
