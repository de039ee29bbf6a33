"""Typed `/openclaw-token` commands: what the grammar produces and the handlers consume.

`SPECS` declares each `/openclaw-token <group> <sub>` command once (usage line, description,
typed options, privacy, help topic); usage errors and `/openclaw-token help` read it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.backends.openclaw_token.service import MIN_PURCHASE, HistoryType, LimitReset
from bot.core.command_spec import CommandSpec, OptionKind, OptionSpec
from bot.core.grammar import UsageError

FAMILY = "openclaw_token"
PREFIX = "/openclaw-token"
LIMIT_RESETS: tuple[LimitReset, ...] = ("daily", "weekly", "monthly")
HISTORY_TYPES: tuple[HistoryType, ...] = ("purchase", "usage", "refund", "auto_topup")

# The models repeat the parser's ranges so a command built any other way is held to them too;
# the parser checks first, with messages that name the flag.
_USD = Decimal("9999999.99")
Usd = Annotated[Decimal, Field(gt=0, le=_USD, decimal_places=2)]
KeyHash = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


class _Command(BaseModel):
    model_config = ConfigDict(frozen=True)

    # --json: the raw data in a code block instead of a table.
    as_json: bool = False


class OpenClawHelp(_Command):
    """The command list, or one group's."""

    kind: Literal["openclaw.help"] = "openclaw.help"
    topic: str | None = None


class PasswordInChat(_Command):
    """Someone tried to pass a password in a message: refuse, and delete it where possible."""

    kind: Literal["openclaw.password_refused"] = "openclaw.password_refused"


class AuthLogin(_Command):
    """GitHub device flow, or (--email) email and password through a private form."""

    kind: Literal["openclaw.auth.login"] = "openclaw.auth.login"
    email: bool = False
    email_hint: str = ""


class AuthRegister(_Command):
    """Create an account through a private form."""

    kind: Literal["openclaw.auth.register"] = "openclaw.auth.register"


class AuthWhoami(_Command):
    """The signed-in account."""

    kind: Literal["openclaw.auth.whoami"] = "openclaw.auth.whoami"


class AuthRotate(_Command):
    """A new management key (after a confirm button unless --yes)."""

    kind: Literal["openclaw.auth.rotate"] = "openclaw.auth.rotate"
    yes: bool = False


class AuthLogout(_Command):
    """Forget the stored management key."""

    kind: Literal["openclaw.auth.logout"] = "openclaw.auth.logout"


class CreditsBalance(_Command):
    """Total, used and remaining credits."""

    kind: Literal["openclaw.credits.balance"] = "openclaw.credits.balance"


class CreditsBuy(_Command):
    """A quote (amount, fee, total) with a Confirm button."""

    kind: Literal["openclaw.credits.buy"] = "openclaw.credits.buy"
    amount: Annotated[Decimal, Field(ge=MIN_PURCHASE, le=_USD, decimal_places=2)]


class CreditsHistory(_Command):
    """One page of transactions."""

    kind: Literal["openclaw.credits.history"] = "openclaw.credits.history"
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1_000_000)
    type: HistoryType | None = None


class CreditsAutoTopup(_Command):
    """View, enable or disable automatic top-up."""

    kind: Literal["openclaw.credits.auto_topup"] = "openclaw.credits.auto_topup"
    action: Literal["show", "enable", "disable"] = "show"
    threshold: Usd | None = None
    amount: Usd | None = None


class KeyFilter(BaseModel):
    """`active`, `disabled`, or `usage<op>N`."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["active", "disabled", "usage"]
    op: Literal[">", ">=", "<", "<=", "="] | None = None
    value: Decimal | None = None


class KeySort(BaseModel):
    """A field to sort keys by, descending when written `-field`."""

    model_config = ConfigDict(frozen=True)

    field: Literal["name", "usage", "created", "limit", "hash"]
    descending: bool = False


class KeysCreate(_Command):
    """Provision a key; the value is shown once, privately."""

    kind: Literal["openclaw.keys.create"] = "openclaw.keys.create"
    name: str = Field(min_length=1, max_length=64)
    credit_limit: Usd | None = None
    limit_reset: LimitReset | None = None
    expires_at: str | None = None


class KeysList(_Command):
    """The caller's keys, filtered and sorted."""

    kind: Literal["openclaw.keys.list"] = "openclaw.keys.list"
    filter: KeyFilter | None = None
    sort: KeySort | None = None
    include_revoked: bool = False


class KeysInfo(_Command):
    """One key's settings and usage breakdown."""

    kind: Literal["openclaw.keys.info"] = "openclaw.keys.info"
    hash: KeyHash


class KeysUpdate(_Command):
    """Change a key's limit, reset period or disabled flag (only the options given)."""

    kind: Literal["openclaw.keys.update"] = "openclaw.keys.update"
    hash: KeyHash
    # `set_*` says whether the option was given at all ("--limit none" clears the limit).
    set_limit: bool = False
    credit_limit: Usd | None = None
    set_reset: bool = False
    limit_reset: LimitReset | None = None
    disabled: bool | None = None

    def patch(self) -> dict[str, Any]:
        """The PATCH body: only what was asked for, amounts as JSON numbers."""
        body: dict[str, Any] = {}
        if self.set_limit:
            body["credit_limit"] = float(self.credit_limit) if self.credit_limit else None
        if self.set_reset:
            body["limit_reset"] = self.limit_reset
        if self.disabled is not None:
            body["disabled"] = self.disabled
        return body


class KeysRotate(_Command):
    """A new value for a key (confirm button unless --yes)."""

    kind: Literal["openclaw.keys.rotate"] = "openclaw.keys.rotate"
    hash: KeyHash
    yes: bool = False


class KeysRevoke(_Command):
    """Revoke one key for good (confirm button unless --yes)."""

    kind: Literal["openclaw.keys.revoke"] = "openclaw.keys.revoke"
    hash: KeyHash
    yes: bool = False


class KeysRevokeAll(_Command):
    """Revoke every active key (confirm button unless --yes)."""

    kind: Literal["openclaw.keys.revoke_all"] = "openclaw.keys.revoke_all"
    yes: bool = False


class KeysUsage(_Command):
    """A usage snapshot, or (--watch) one message updated every `interval` s for 10 min."""

    kind: Literal["openclaw.keys.usage"] = "openclaw.keys.usage"
    hash: KeyHash
    watch: bool = False
    interval: int = Field(5, ge=1, le=300)


class Integrate(_Command):
    """Set (new key, or an existing key via a private form), show or remove the fallback."""

    kind: Literal["openclaw.integrate"] = "openclaw.integrate"
    action: Literal["set", "status", "remove"] = "set"
    hash: KeyHash | None = None
    name: str = Field("tokenbot-fallback", min_length=1, max_length=64)
    credit_limit: Usd | None = None
    limit_reset: LimitReset | None = None


class AuditShow(_Command):
    """Recent operations: the caller's own, or (admins, --all) everyone's."""

    kind: Literal["openclaw.audit.show"] = "openclaw.audit.show"
    limit: int = Field(20, ge=1, le=200)
    everyone: bool = False


# --- specs -----------------------------------------------------------------------------------


def _opt(
    name: str,
    description: str,
    kind: OptionKind = "text",
    *,
    choices: tuple[str, ...] = (),
    positional: bool = False,
    required: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> OptionSpec:
    return OptionSpec(
        name=name,
        kind=kind,
        description=description,
        choices=choices,
        positional=positional,
        required=required,
        min_value=low,
        max_value=high,
    )


_JSON = _opt("json", "The raw data instead of a table", "bool")
_YES = _opt("yes", "Skip the confirmation button", "bool")
_HASH = _opt("hash", "The key's 16-character hash (see keys list)", positional=True, required=True)
_LIMIT_USD = _opt("limit", "Spend limit in USD")
_LIMIT_RESET = _opt("limit-reset", "When the limit resets", "choice", choices=LIMIT_RESETS)


def _spec(
    words: str,
    usage: str,
    description: str,
    model: type[BaseModel],
    *options: OptionSpec,
    examples: tuple[str, ...] = (),
) -> CommandSpec:
    path = tuple(words.split())
    return CommandSpec(
        family=FAMILY,
        name=f"openclaw-token {words}",
        path=("openclaw-token", *path),
        usage=f"{PREFIX} {words}{' ' + usage if usage else ''}",
        description=description,
        options=options,
        # OpenClaw Token answers only the caller (the `keys usage --watch` message aside).
        private=True,
        topic=path[0],
        model=model,
        examples=examples or (f"{PREFIX} {words}",),
    )


_GROUP_TOPICS = ("auth", "credits", "keys", "integrate", "audit")
_RESETS = "|".join(LIMIT_RESETS)
_H = "0123456789abcdef"

SPECS: tuple[CommandSpec, ...] = (
    _spec(
        "help",
        f"[{'|'.join(_GROUP_TOPICS)}]",
        "The command list, or one group's",
        OpenClawHelp,
        _opt("topic", "One group's commands", "choice", choices=_GROUP_TOPICS),
        examples=(f"{PREFIX} help keys", PREFIX),
    ),
    _spec(
        "auth login",
        "[--email]",
        "Sign in with GitHub (a code, privately), or --email for a private form",
        AuthLogin,
        _opt("email", "Email and password in a private form instead of GitHub", "bool"),
        _opt("github", "GitHub sign-in (the default)", "bool"),
        examples=(f"{PREFIX} auth login", f"{PREFIX} auth login --email"),
    ),
    _spec("auth register", "", "Create an account through a private form", AuthRegister),
    _spec("auth whoami", "[--json]", "The signed-in account", AuthWhoami, _JSON),
    _spec(
        "auth rotate", "[--yes]", "A new management key (after a confirmation)", AuthRotate, _YES
    ),
    _spec("auth logout", "", "Forget the stored management key", AuthLogout),
    _spec(
        "credits balance", "[--json]", "Total, used and remaining credits", CreditsBalance, _JSON
    ),
    _spec(
        "credits buy",
        "--amount <USD ≥ 5>",
        "Buy credits: the fee and total, then a Confirm button",
        CreditsBuy,
        _opt("amount", f"USD, at least {MIN_PURCHASE}", required=True),
        examples=(f"{PREFIX} credits buy --amount 14.54", f"{PREFIX} credits buy 100"),
    ),
    _spec(
        "credits history",
        "[--limit N] [--offset N] [--type " + "|".join(HISTORY_TYPES) + "] [--json]",
        "One page of transactions",
        CreditsHistory,
        _opt("limit", "How many (1-100)", "int", low=1, high=100),
        _opt("offset", "How many to skip", "int", low=0, high=1_000_000),
        _opt("type", "Only this kind", "choice", choices=HISTORY_TYPES),
        _JSON,
        examples=(f"{PREFIX} credits history --limit 50 --type purchase",),
    ),
    _spec(
        "credits auto-topup",
        "[--enable [--threshold USD] [--amount USD] | --disable] [--json]",
        "View, enable or disable automatic top-up",
        CreditsAutoTopup,
        _opt("enable", "Turn it on", "bool"),
        _opt("disable", "Turn it off", "bool"),
        _opt("threshold", "Top up below this balance (USD)"),
        _opt("amount", "How much to add each time (USD)"),
        _JSON,
        examples=(f"{PREFIX} credits auto-topup --enable --threshold 5 --amount 25",),
    ),
    _spec(
        "keys create",
        f"--name <name> [--limit USD] [--limit-reset {_RESETS}] [--expires YYYY-MM-DD]",
        "A provisioned key with a spend limit, shown once, privately",
        KeysCreate,
        _opt("name", "The key's name", required=True),
        _LIMIT_USD,
        _LIMIT_RESET,
        _opt("expires", "Expiry date (YYYY-MM-DD) or ISO time", "date"),
        examples=(f'{PREFIX} keys create --name "my agent" --limit 10 --limit-reset monthly',),
    ),
    _spec(
        "keys list",
        "[--filter active|disabled|usage>N|usage<=N] "
        "[--sort name|usage|created|limit (prefix - to reverse)] [--include-revoked] [--json]",
        "Your keys, filtered and sorted",
        KeysList,
        _opt("filter", "active, disabled, usage>N or usage<=N"),
        _opt("sort", "name, usage, created or limit; -usage reverses"),
        _opt("include-revoked", "Also revoked keys", "bool"),
        _JSON,
        examples=(f"{PREFIX} keys list --filter usage>10 --sort -usage",),
    ),
    _spec(
        "keys info",
        "<hash> [--json]",
        "One key's settings and usage",
        KeysInfo,
        _HASH,
        _JSON,
        examples=(f"{PREFIX} keys info {_H}",),
    ),
    _spec(
        "keys update",
        f"<hash> [--limit USD|none] [--limit-reset {_RESETS}|none] [--disabled|--enabled]",
        "Change a key's limit, reset period or disabled flag",
        KeysUpdate,
        _HASH,
        _opt("limit", "Spend limit in USD, or none"),
        _opt("limit-reset", "When the limit resets", "choice", choices=(*LIMIT_RESETS, "none")),
        _opt("disabled", "Disable the key", "bool"),
        _opt("enabled", "Enable the key", "bool"),
        examples=(f"{PREFIX} keys update {_H} --limit none --disabled",),
    ),
    _spec(
        "keys rotate",
        "<hash> [--yes]",
        "A new value for a key (after a confirmation)",
        KeysRotate,
        _HASH,
        _YES,
        examples=(f"{PREFIX} keys rotate {_H}",),
    ),
    _spec(
        "keys revoke",
        "<hash> [--yes]",
        "Revoke one key for good (after a confirmation)",
        KeysRevoke,
        _HASH,
        _YES,
        examples=(f"{PREFIX} keys revoke {_H} --yes",),
    ),
    _spec(
        "keys revoke-all",
        "[--yes]",
        "Revoke every active key (after a confirmation)",
        KeysRevokeAll,
        _YES,
    ),
    _spec(
        "keys usage",
        "<hash> [--watch] [--interval SECONDS]",
        "A key's usage; --watch keeps one message updated for 10 minutes",
        KeysUsage,
        _HASH,
        _opt("watch", "Keep one message updated", "bool"),
        _opt("interval", "Seconds between updates", "int", low=1, high=300),
        examples=(f"{PREFIX} keys usage {_H} --watch --interval 10",),
    ),
    _spec(
        "integrate",
        f"[<hash>] [--name N] [--limit USD] [--limit-reset {_RESETS}] | --status | --remove",
        "Make a provisioned key your fallback for AllToken chat and search",
        Integrate,
        _opt("hash", "An existing key's hash (else a new key is made)", positional=True),
        _opt("name", "The new key's name"),
        _LIMIT_USD,
        _LIMIT_RESET,
        _opt("status", "Show the fallback", "bool"),
        _opt("remove", "Remove the fallback", "bool"),
        examples=(f"{PREFIX} integrate", f"{PREFIX} integrate --status"),
    ),
    _spec(
        "audit show",
        "[--limit N] [--all]",
        "Your recent operations (--all: everyone's, admins only)",
        AuditShow,
        _opt("limit", "How many (1-200)", "int", low=1, high=200),
        _opt("all", "Everyone's (admins only)", "bool"),
        examples=(f"{PREFIX} audit show --limit 5", f"{PREFIX} audit"),
    ),
)


def _group_usage(group: str) -> str:
    subs = [s.path[2] for s in SPECS if len(s.path) == 3 and s.path[1] == group]
    return f"{PREFIX} {group} <{'|'.join(subs)}>"


GROUPS: tuple[str, ...] = (*dict.fromkeys(s.path[1] for s in SPECS if s.path[1] != "help"), "help")
# Usage lines by "group subcommand", each group's summary by "group", the whole by "".
USAGE: dict[str, str] = {
    "": f"{PREFIX} <{'|'.join(GROUPS)}> … [--json]",
    **{" ".join(s.path[1:]): s.usage for s in SPECS},
    **{g: _group_usage(g) for g in ("auth", "credits", "keys")},
    "audit": next(s.usage for s in SPECS if s.path[1:] == ("audit", "show")),
}


def usage_error(command: str, problem: str) -> UsageError:
    """A UsageError for "group sub" (or a group, or "" for the whole), with its usage line."""
    usage = USAGE.get(command) or USAGE[command.split(" ")[0] if command else ""]
    return UsageError(f"openclaw-token {command}".strip(), problem, usage)
