"""Which claimable job rows this replica cannot run, and whether a newer replica might.

During a rolling deploy replicas of two releases share the store. A row the next release wrote
(a job kind this code does not have, a state of a newer version or with fields this code does
not know) is left for a replica of that release instead of being quarantined at once: one of
them takes it within a lease round or two. Only when none has for `wait_s` (a rollback, or a
release that never came) is it quarantined and its owner told.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bot.core.job_state import NewerStateError, state_model_of
from bot.core.messages import Destination
from bot.store import JobRecord

# How long a row a newer release may run waits for one of its replicas (seconds).
NEWER_REPLICA_WAIT_S = 600.0


@dataclass(frozen=True)
class Unresumable:
    """Why this process cannot run a row; `newer` when a newer tokenbot may be able to."""

    reason: str
    newer: bool = False


def unresumable(job: JobRecord, kinds: Mapping[str, Any]) -> Unresumable | None:
    """Why this decoded row cannot be run by a process with these job kinds, or None."""
    kind = kinds.get(job.kind)
    if kind is None:
        known = ", ".join(sorted(kinds)) or "none"
        reason = f"unknown job kind {job.kind!r} (this tokenbot runs: {known})"
        return Unresumable(reason, newer=True)
    try:
        Destination.model_validate(job.destination)
    except ValidationError as exc:
        return Unresumable(f"its destination does not decode ({exc.error_count()} error(s))")
    try:
        state_model_of(kind).load(job.state)
        check = getattr(kind, "check_state", None)
        if check is not None:
            check(job.state)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'state'}: {e['msg']}" for e in exc.errors()[:3]
        )
        # Only fields this code does not know: written by a release that added them.
        added = all(e["type"] == "extra_forbidden" for e in exc.errors())
        reason = f"its saved state cannot be loaded by the {job.kind} job ({errors})"
        return Unresumable(reason, newer=added)
    except NewerStateError as exc:
        return Unresumable(f"its saved state cannot be loaded by the {job.kind} job ({exc})", True)
    except (ValueError, TypeError, KeyError) as exc:
        return Unresumable(f"its saved state cannot be loaded by the {job.kind} job ({exc})")
    return None


class NewerRowWait:
    """When this replica first saw each row a newer release may run; whether to wait on."""

    def __init__(self, wait_s: float = NEWER_REPLICA_WAIT_S) -> None:
        self.wait_s = wait_s
        self._first_seen: dict[str, float] = {}

    def waits(self, job_id: str, now: float) -> bool:
        """True while the row is to be left for a newer replica; False once it waited enough."""
        first = self._first_seen.setdefault(job_id, now)
        if now - first < self.wait_s:
            return True
        del self._first_seen[job_id]
        return False

    def forget(self, seen: set[str]) -> None:
        """Drop rows no longer claimable here (a newer replica took them)."""
        for job_id in [j for j in self._first_seen if j not in seen]:
            del self._first_seen[job_id]

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._first_seen
