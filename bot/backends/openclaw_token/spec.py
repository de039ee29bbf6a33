"""Typed `/openclaw-token` commands: what the parser produces and the handlers consume."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.backends.alltoken.spec import UsageError
from bot.backends.openclaw_token.service import MIN_PURCHASE, HistoryType, LimitReset

PREFIX = "/openclaw-token"

# The models repeat the parser's ranges so a command built any other way is held to them too;
# the parser checks first, with messages that name the flag.
_USD = Decimal("9999999.99")
Usd = Annotated[Decimal, Field(gt=0, le=_USD, decimal_places=2)]
KeyHash = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]

# Usage lines by "group subcommand" (and "group" for the group's summary).
USAGE: dict[str, str] = {
    "": f"{PREFIX} <auth|credits|keys|integrate|audit|help> … [--json]",
    "help": f"{PREFIX} help [auth|credits|keys|integrate|audit]",
    "auth": f"{PREFIX} auth <login [--email]|register|whoami|rotate|logout>",
    "auth login": f"{PREFIX} auth login [--email]",
    "auth register": f"{PREFIX} auth register",
    "auth whoami": f"{PREFIX} auth whoami [--json]",
    "auth rotate": f"{PREFIX} auth rotate [--yes]",
    "auth logout": f"{PREFIX} auth logout",
    "credits": f"{PREFIX} credits <balance|buy|history|auto-topup>",
    "credits balance": f"{PREFIX} credits balance [--json]",
    "credits buy": f"{PREFIX} credits buy --amount <USD ≥ 5>",
    "credits history": f"{PREFIX} credits history [--limit N] [--offset N] "
    "[--type purchase|usage|refund|auto_topup] [--json]",
    "credits auto-topup": f"{PREFIX} credits auto-topup [--enable [--threshold USD] "
    "[--amount USD] | --disable] [--json]",
    "keys": f"{PREFIX} keys <create|list|info|update|rotate|revoke|revoke-all|usage>",
    "keys create": f"{PREFIX} keys create --name <name> [--limit USD] "
    "[--limit-reset daily|weekly|monthly] [--expires YYYY-MM-DD]",
    "keys list": f"{PREFIX} keys list [--filter active|disabled|usage>N|usage<=N] "
    "[--sort name|usage|created|limit (prefix - to reverse)] [--include-revoked] [--json]",
    "keys info": f"{PREFIX} keys info <hash> [--json]",
    "keys update": f"{PREFIX} keys update <hash> [--limit USD|none] "
    "[--limit-reset daily|weekly|monthly|none] [--disabled|--enabled]",
    "keys rotate": f"{PREFIX} keys rotate <hash> [--yes]",
    "keys revoke": f"{PREFIX} keys revoke <hash> [--yes]",
    "keys revoke-all": f"{PREFIX} keys revoke-all [--yes]",
    "keys usage": f"{PREFIX} keys usage <hash> [--watch] [--interval SECONDS]",
    "integrate": f"{PREFIX} integrate [<hash>] [--name N] [--limit USD] "
    "[--limit-reset daily|weekly|monthly] | --status | --remove",
    "audit": f"{PREFIX} audit show [--limit N] [--all]",
    "audit show": f"{PREFIX} audit show [--limit N] [--all]",
}


class OpenClawUsageError(UsageError):
    """Bad input for an `/openclaw-token` command, with that command's usage line."""

    def __init__(self, command: str, problem: str) -> None:
        super().__init__(f"openclaw-token {command}".strip(), problem)
        self.usage = USAGE.get(command) or USAGE[command.split(" ")[0] if command else ""]
        self.args = (f"{problem} — usage: {self.usage}",)


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
