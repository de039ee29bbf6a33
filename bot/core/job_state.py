"""The saved progress of a durable job: one pydantic model per job kind, versioned.

A job row's `state` column is the JSON dump of its kind's `JobState` model, `version`
included. Loading a row runs it through the model's upgrade steps first, so code that renames
or reshapes a field keeps resuming rows written by the previous version:

    version 0 (no `version` key: written before job states were typed)
      --UPGRADES[0]-->  version 1  --UPGRADES[1]-->  version 2 ...  --validate-->  the model

To change a kind's state: bump the model's `version` default and add `UPGRADES[old]`, a function
from a version-`old` dict to a version-`old + 1` dict. A key an upgrade drops is cleared in the
row (set to None) when the job resumes, and unknown keys whose value is None are ignored, since
rows are updated key by key and a key cannot be deleted from them. A row of a version this code
does not know, or one that does not validate, is not resumed: the runner quarantines it (one
the next release may have written after leaving it to that release's replicas a while:
bot.core.job_triage).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, model_validator

Upgrade = Callable[[dict[str, Any]], dict[str, Any]]


class StateVersionError(ValueError):
    """A saved state of a version this code cannot read (newer, or no way to upgrade it)."""


class NewerStateError(StateVersionError):
    """A saved state written by a newer tokenbot (a replica of the next release)."""


class JobState(BaseModel):
    """Base of every job kind's state model: a `version` field and the upgrade path to it.

    Subclasses declare `version: int = N` (their current version) and, once N > 1, `UPGRADES`.
    Unknown keys are refused, so a renamed key fails loudly instead of being silently lost.
    """

    model_config = ConfigDict(extra="forbid")

    # Steps from older versions: UPGRADES[n] turns a version-n dict into a version-(n+1) dict.
    # Version 0 -> 1 defaults to "same keys": version 1 of every kind is the untyped state.
    UPGRADES: ClassVar[Mapping[int, Upgrade]] = {}

    version: int = 1

    @classmethod
    def current_version(cls) -> int:
        """The version this code writes (the `version` field's default)."""
        return int(cls.model_fields["version"].default)

    @classmethod
    def load(cls, raw: Mapping[str, Any]) -> Self:
        """Upgrade a stored state dict to the current version and validate it.

        Raises StateVersionError for an unknown version and ValidationError (a ValueError)
        for a state that does not fit the model.
        """
        data = dict(raw)
        version = data.get("version", 0)
        current = cls.current_version()
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise StateVersionError(f"state version {version!r} is not a version number")
        if version > current:
            raise NewerStateError(
                f"state version {version} is newer than this tokenbot reads ({current})"
            )
        while version < current:
            step = cls.UPGRADES.get(version)
            if step is None and version != 0:
                raise StateVersionError(f"no upgrade from state version {version}")
            data = step(data) if step is not None else data
            version += 1
            data["version"] = version
        return cls.model_validate(data)

    @classmethod
    def is_current(cls, raw: Mapping[str, Any]) -> bool:
        """Whether a stored state dict is already at the current version."""
        return raw.get("version") == cls.current_version()

    @property
    def request_id(self) -> str | None:
        """The backend's id for this job's work (task, session...), audited when it ends."""
        return None

    @model_validator(mode="before")
    @classmethod
    def _ignore_cleared_keys(cls, data: Any) -> Any:
        # A key an upgrade dropped stays in the row as None (rows merge, they cannot delete).
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k in cls.model_fields or v is not None}
        return data

    @model_validator(mode="after")
    def _check_version(self) -> Self:
        if self.version != self.current_version():
            raise ValueError(f"version must be {self.current_version()}, not {self.version}")
        return self


class NoState(JobState):
    """The state of a job kind that saves nothing (and the default for a kind without one)."""

    version: int = 1


def state_model_of(kind: object) -> type[JobState]:
    """The state model a job kind declared (NoState if it declared none)."""
    model = getattr(kind, "state_model", NoState)
    if not (isinstance(model, type) and issubclass(model, JobState)):
        raise TypeError(
            f"job kind {getattr(kind, 'kind', kind)}: state_model must be a JobState subclass"
        )
    return model
