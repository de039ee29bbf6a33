"""The port through which a workspace policy admits or refuses a command before its handler runs.

The core never imports the policy's implementation (bot/teams registers one with
`wiring.services.add(gate, as_=PolicyGate)`); without it every command runs as before.
`TokenBot.handle` calls `admit` just before the handler and answers a Failure privately.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pydantic import BaseModel

from bot.core.command_spec import CommandSpec

if TYPE_CHECKING:
    from bot.core.context import HandlerContext
    from bot.core.messages import Failure


class PolicyGate:
    """Admits a command (perhaps with the channel's default model filled in) or refuses it.

    A concrete base (like the backends' hooks) so the registry can look it up by type: it
    admits everything; the teams family subclasses it.
    """

    def know(self, specs: Sequence[CommandSpec]) -> None:
        """Every installed command, told once when the bot is built (names, model options)."""

    async def admit(
        self, ctx: HandlerContext, family: str, spec_name: str, command: BaseModel
    ) -> BaseModel | Failure:
        """The command to run, or the Failure that says which rule refused it and whom to ask.

        `spec_name` is the command's policy name (`policy_name`), e.g. "chat", "keys create".
        """
        return command


def policy_name(spec: CommandSpec) -> str:
    """How admins name a command in a policy: the words after the backend's name.

    "/alltoken-chat" -> "chat", "/openmarlin task start" -> "task start",
    "/openclaw-token keys create" -> "keys create".
    """
    if len(spec.path) > 1:
        return " ".join(spec.path[1:])
    head = spec.path[0]
    return head.split("-", 1)[1] if "-" in head else head


def spec_for(specs: Sequence[CommandSpec], command: BaseModel) -> CommandSpec | None:
    """The spec whose command model `command` is, if any."""
    return next((s for s in specs if s.model is type(command)), None)
