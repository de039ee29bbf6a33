"""Where a paid image's bytes go when the images dir cannot take them.

AllToken hands an image's bytes out once. If they cannot be written to the images dir
(read-only, full, not a directory), the image job keeps them in the job row and in a
temporary file outside the data dir (memory-backed /dev/shm where there is one), delivers from
there, and shows the backend's r2 link either way; see `ImageJob` in image_job.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.backends.alltoken.job_state import ImageState

log = logging.getLogger(__name__)

# Tried in order for the temporary copy: memory-backed first, then the system temp dir.
_SPILL_DIRS = (Path("/dev/shm"), Path(tempfile.gettempdir()))


@dataclass
class KeptImage:
    """A completed image: where its bytes are, what the backend said about it."""

    mime: str
    r2_url: str | None
    r2_expires_at: datetime | None
    path: Path | None = None
    data: bytes | None = None
    # Why it is not in the images dir (None when it is).
    problem: str | None = None
    in_row: bool = False

    @classmethod
    def from_state(cls, state: ImageState) -> KeptImage:
        """Rebuild from a job's saved state (after a restart, or a save)."""
        data = None
        if state.image_b64:
            with contextlib.suppress(binascii.Error, ValueError):
                data = base64.b64decode(state.image_b64)
        return cls(
            mime=state.mime or "image/png",
            r2_url=state.r2_url,
            r2_expires_at=expiry_of(state.r2_expires_at),
            path=Path(state.file) if state.file else None,
            data=data,
            problem=state.save_problem,
            in_row=data is not None,
        )


def save_problem(directory: Path, exc: OSError) -> str:
    """Why the image could not be saved, for the user and the log."""
    reason = exc.strerror or type(exc).__name__
    return f"tokenbot could not save it in its images folder {directory} ({reason})"


def spill(job_id: str, data: bytes) -> Path | None:
    """Write `data` to a private temporary file outside the data dir; None if nowhere works."""
    for directory in _SPILL_DIRS:
        if not directory.is_dir():
            continue
        try:
            fd, name = tempfile.mkstemp(prefix=f"{job_id}-", suffix=".png", dir=directory)
        except OSError:
            continue
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
        except OSError as exc:
            log.warning("could not spill image %s to %s: %s", job_id, directory, exc)
            with contextlib.suppress(OSError):
                os.unlink(name)
            continue
        return Path(name)
    return None


def expiry_of(value: object) -> datetime | None:
    """An r2 link's expiry from ISO text or epoch seconds (or milliseconds)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 1e12 else value
        try:
            return datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
