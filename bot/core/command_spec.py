"""What a command is, declared once: name, usage, description, typed options, reply privacy.

Every place that lists or checks commands reads these specs instead of keeping its own copy:
usage errors and help (with topics), the Discord command tree, the Slack manifest check and the
README's command table. A family declares its specs next to its command models (`spec.py`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OptionKind = Literal["text", "int", "float", "bool", "choice", "date"]
# A typed option value as a platform delivers it (Discord slash options, Slack modal fields).
OptionValue = str | int | float | bool


class OptionSpec(BaseModel):
    """One option of a command: a `--name=value` flag in text, a typed option on Discord."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: OptionKind = "text"
    description: str
    required: bool = False
    choices: tuple[str, ...] = ()
    # The free-text part of the command (a prompt, a query) rather than a `--flag`.
    positional: bool = False
    # Which list an adapter may offer as suggestions, e.g. "models:chat"; the family answers
    # from its cache (never the network) through `CommandFamily.suggest`.
    suggest: str | None = None
    min_value: float | None = None
    max_value: float | None = None
    # Secrets never travel as a visible option: adapters open a private form instead.
    secret: bool = False


class CommandSpec(BaseModel):
    """One command: `path` is what a user types after the slash, e.g. ("openclaw-token", "keys", "create")."""

    model_config = ConfigDict(frozen=True)

    family: str
    path: tuple[str, ...] = Field(min_length=1)
    usage: str
    description: str
    options: tuple[OptionSpec, ...] = ()
    aliases: tuple[str, ...] = ()
    # Answer only the caller (keys, billing, anything with personal data).
    private: bool = False
    # The help topic this command is listed under (`/alltoken-help image`).
    topic: str | None = None
    # The name usage errors, audit rows and metrics use for it ("image", "openmarlin.topup",
    # "openclaw-token keys create"); the family's grammar looks specs up by it.
    name: str = ""
    # The command model its grammar builds (`parse_options(spec, …)` returns one of these).
    model: type[BaseModel] | None = None
    # Concrete invocations, as typed, that parse to `model` (help shows the first; tests run all).
    examples: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """`name`, or the displayed path when the spec has none."""
        return self.name or " ".join(self.path)

    @property
    def slash(self) -> str:
        """The platform slash command that carries it, e.g. "/openclaw-token"."""
        return "/" + self.path[0]

    @property
    def display(self) -> str:
        """How help and errors write it: "/openclaw-token keys create"."""
        return "/" + " ".join(self.path)

    def option(self, name: str) -> OptionSpec | None:
        """The option called `name`, if the command has one."""
        return next((o for o in self.options if o.name == name), None)

    @property
    def flags(self) -> dict[str, bool]:
        """The `--flag` options by name, each with whether it takes a value (not a bool)."""
        return {o.name: o.kind != "bool" for o in self.options if not o.positional}


def spec_named(specs: tuple[CommandSpec, ...], name: str) -> CommandSpec:
    """The spec whose `key` is `name`; KeyError when a family has none (a programming error)."""
    for spec in specs:
        if spec.key == name:
            return spec
    raise KeyError(name)


def usage_lines(specs: tuple[CommandSpec, ...]) -> dict[str, str]:
    """Each spec's usage line by its `key`: what a family's usage errors carry."""
    return {spec.key: spec.usage for spec in specs}
