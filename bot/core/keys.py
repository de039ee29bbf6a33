"""The caller's own keys, for every family: which services exist, storing a key, unreadable keys.

Families declare their key services (`KeyService`: display name, prefix, how to set one, an
optional cheap check); bot/core/key_forms.py stores keys after checking their shape, and this
module words the failures. It never names a backend itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.core.failures import FailureRenderer
from bot.core.messages import Failure, Notice

UNREADABLE_CODE = "key_unreadable"

# A cheap authenticated call with the new key; raises BackendError when the backend refuses it.
KeyCheck = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class KeyService:
    """One kind of key a user can store: `name` is the store's service name."""

    name: str
    display: str
    # What a key of this service starts with (checked before any request).
    prefix: str
    # How to set one, in the words of the family's own commands.
    hint: str
    # The BackendError backend this key belongs to.
    backend: str
    check: KeyCheck | None = None
    refused_hint: str = "Copy the key again and retry."
    # How the family words any other failure of `check` (its codes and next steps).
    render: FailureRenderer | None = None


class KeyDirectory:
    """Every key service the installed families declare."""

    def __init__(self) -> None:
        self._services: dict[str, KeyService] = {}

    def add(self, service: KeyService) -> None:
        """Declare a key service (a family does this when the bot is built)."""
        self._services[service.name] = service

    def get(self, name: str) -> KeyService | None:
        """The declared service called `name`."""
        return self._services.get(name)

    def display(self, name: str) -> str:
        """The name users know the service by."""
        found = self._services.get(name)
        return found.display if found else name

    def hint(self, name: str) -> str:
        """How to set a key of this service."""
        found = self._services.get(name)
        return found.hint if found else ""


def unreadable_key_failure(service: str, keys: KeyDirectory) -> Failure:
    """What the user is told when their stored key no longer decrypts (master key changed)."""
    name = keys.display(service)
    return Failure(
        code=UNREADABLE_CODE,
        message=(
            f"Your {name} key is stored but tokenbot cannot read it: the bot's master key "
            "changed since it was stored (or the stored copy is damaged), so it was not used."
        ),
        hint=f"Set it again. {keys.hint(service)}".strip()
        + " If this happens to everyone, tell the bot's operator (the master key changed).",
    )


def missing_key_notice(service: str, keys: KeyDirectory) -> Notice:
    """What the user is told when a command needs a key they have not stored."""
    return Notice(
        level="warning",
        text=f"You have no {keys.display(service)} key stored yet. {keys.hint(service)}".strip(),
    )
