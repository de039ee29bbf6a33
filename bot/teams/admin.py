"""`/tokenbot admin …`: workspace policy changes by admins, each audited and answered privately.

Non-admins are refused every admin command with who the admins are. TOKENBOT_ADMINS can never
be removed, and the last admin cannot remove themself. The one non-admin change here is a
member's own opt-in (`/tokenbot budget own-keys on|off`): whether their own-key calls count
against the caps is their choice, since it is their money, so no admin can make it for them.
Every change is a read-modify-write of one policy value in one store transaction
(`Store.update_policy`), decided on the value as it is then: two admins changing the same key
at the same instant (or many members opting in at once) all land.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.failures import generic_failure
from bot.core.key_shapes import fingerprint, key_service
from bot.core.messages import Failure, FormField, FormRequest, Notice
from bot.store import AuditEntry
from bot.teams.gate import (
    TeamsGate,
    WorkspacePolicy,
    admins_of,
    is_admin_in,
    is_operator_admin,
    load_policy,
    who_to_ask,
)
from bot.teams.spec import (
    BUDGET_FIELDS,
    AdminAdd,
    AdminChannelModel,
    AdminChannels,
    AdminCommands,
    AdminModels,
    AdminRemove,
    AdminWorkspaceKey,
    BudgetCap,
    OwnKeysOptIn,
)
from bot.teams.spend_control import LENDABLE_SERVICES

Level = Literal["info", "success", "warning"]
WORKSPACE_KEY_FORM = "tokenbot.workspace_key."
AUDIT_COMMAND = "tokenbot.policy.change"


# --- shared ----------------------------------------------------------------------------------


async def _say(ctx: HandlerContext, text: str, level: Level = "success") -> None:
    await ctx.conversation.whisper([Notice(level=level, text=text)])


async def _refuse(ctx: HandlerContext, code: str, message: str, hint: str = "") -> None:
    await ctx.conversation.whisper([Failure(code=code, message=message, hint=hint or None)])
    ctx.outcome = "refused"


async def _audit(ctx: HandlerContext, detail: str) -> None:
    await ctx.store.audit(
        AuditEntry(owner=ctx.owner, command=AUDIT_COMMAND, outcome="changed", detail=detail)
    )


class _Unchanged(Exception):
    """Raised by a change when the value as stored already says what was asked: nothing is written."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _Refused(Exception):
    """Raised by a change the value as stored does not allow: nothing is written."""

    def __init__(self, code: str, message: str, hint: str) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


class _Skipped:
    """What `_change` returns when nothing was written (the reply is already said)."""


SKIPPED = _Skipped()


async def _change(ctx: HandlerContext, key: str, change: Callable[[Any], Any], detail: str) -> Any:
    """Apply `change` to the stored value in one transaction, audit it; the new value.

    `change` gets the value as stored now (a copy) and runs inside the store's transaction, so
    it must be pure; it raises _Unchanged or _Refused to write nothing (then SKIPPED is returned).
    """
    inbound = ctx.inbound
    try:
        new = await ctx.store.update_policy(
            inbound.platform, inbound.workspace, key, change, inbound.user
        )
    except _Unchanged as same:
        await _say(ctx, same.text, "info")
        return SKIPPED
    except _Refused as no:
        await _refuse(ctx, no.code, no.message, no.hint)
        return SKIPPED
    await _audit(ctx, detail)
    return new


def _decoded(key: str, value: Any) -> WorkspacePolicy:
    """One stored value decoded as the gate reads it (malformed means unset)."""
    return WorkspacePolicy.from_raw({key: value})


def _copied(lists: Mapping[str, tuple[str, ...]]) -> dict[str, list[str]]:
    return {k: list(v) for k, v in lists.items()}


async def _admin_policy(ctx: HandlerContext) -> WorkspacePolicy | None:
    """The policy when the caller is an admin; else the refusal said and None."""
    policy = await load_policy(ctx)
    if is_admin_in(ctx, policy):
        return policy
    await ctx.conversation.whisper(
        [
            Failure(
                code="admin_only",
                message="Only tokenbot admins can change the workspace policy.",
                hint=who_to_ask(ctx, policy) + " Anyone can read it with `/tokenbot policy`.",
            )
        ]
    )
    ctx.outcome = "denied"
    return None


def _gate(ctx: HandlerContext) -> TeamsGate:
    return ctx.services.get(TeamsGate)


async def _known_backend(ctx: HandlerContext, backend: str) -> bool:
    known = sorted(_gate(ctx).catalog)
    if backend in known:
        return True
    names = ", ".join(f"`{b.replace('_', '-')}`" for b in known)
    await _refuse(ctx, "usage", f"There is no backend `{backend}` here.", f"Use one of {names}.")
    return False


def _listed(values: list[str] | tuple[str, ...]) -> str:
    return ", ".join(f"`{v}`" for v in values) or "none"


# --- admins ----------------------------------------------------------------------------------


async def add_admin(cmd: AdminAdd, ctx: HandlerContext) -> None:
    """Make `cmd.user` an admin of this workspace."""
    if await _admin_policy(ctx) is None:
        return

    def add(value: Any) -> list[str]:
        admins = list(_decoded("admins", value).admins)
        if cmd.user in admins or is_operator_admin(ctx, cmd.user):
            raise _Unchanged(f"`{cmd.user}` is already a tokenbot admin.")
        return [*admins, cmd.user]

    if await _change(ctx, "admins", add, f"admins: added {cmd.user}") is SKIPPED:
        return
    await _say(ctx, f"`{cmd.user}` is now a tokenbot admin of this workspace.")


async def remove_admin(cmd: AdminRemove, ctx: HandlerContext) -> None:
    """Remove an admin added in chat (never TOKENBOT_ADMINS, never the last admin)."""
    if await _admin_policy(ctx) is None:
        return
    if is_operator_admin(ctx, cmd.user):
        await _refuse(
            ctx,
            "admin_protected",
            f"`{cmd.user}` is named by TOKENBOT_ADMINS and cannot be removed in chat.",
            "Only the bot's operator can change TOKENBOT_ADMINS.",
        )
        return

    def remove(value: Any) -> list[str]:
        admins = _decoded("admins", value).admins
        if cmd.user not in admins:
            raise _Unchanged(f"`{cmd.user}` is not a tokenbot admin.")
        rest = [a for a in admins if a != cmd.user]
        # Decided on the stored list: two admins removing each other at once leave one.
        if not admins_of(ctx, WorkspacePolicy(admins=tuple(rest))):
            raise _Refused(
                "last_admin",
                f"`{cmd.user}` is the last tokenbot admin; removing them would leave no one "
                "to change the policy.",
                "Add another admin first (`/tokenbot admin add @someone`).",
            )
        return rest

    if await _change(ctx, "admins", remove, f"admins: removed {cmd.user}") is SKIPPED:
        return
    await _say(ctx, f"`{cmd.user}` is no longer a tokenbot admin.")


# --- channels, commands, models ---------------------------------------------------------------


async def set_channels(cmd: AdminChannels, ctx: HandlerContext) -> None:
    """Everywhere, or add / remove one allowed channel."""
    if await _admin_policy(ctx) is None:
        return
    if cmd.action == "everywhere":
        await _change(ctx, "channels", lambda _value: None, "channels: everywhere")
        await _say(ctx, "tokenbot's commands are allowed everywhere now (direct messages too).")
        return
    channel = cmd.channel
    assert channel is not None  # the grammar requires one for add/remove

    def add(value: Any) -> list[str]:
        listed = _decoded("channels", value).channels
        if listed is not None and channel in listed:
            raise _Unchanged(f"`{channel}` is already allowed.")
        return [*(listed or ()), channel]

    def remove(value: Any) -> list[str]:
        listed = _decoded("channels", value).channels
        if listed is None or channel not in listed:
            raise _Unchanged(f"`{channel}` is not on the list of allowed channels.")
        return [c for c in listed if c != channel]

    if cmd.action == "add":
        current = await _change(ctx, "channels", add, f"channels: added {channel}")
        if current is SKIPPED:
            return
        await _say(
            ctx,
            f"Allowed `{cmd.channel}`. Commands now run only in {_listed(current)} "
            "(direct messages only for `/tokenbot` and help); `everywhere` lifts the list.",
        )
        return
    current = await _change(ctx, "channels", remove, f"channels: removed {channel}")
    if current is not SKIPPED:
        await _say(ctx, f"Removed `{channel}`. Allowed channels: {_listed(current)}.")


def _command_names(words: tuple[str, ...], known: list[str]) -> tuple[list[str], list[str]]:
    """Words -> known command names (multi-word ones like "keys create" joined) and the unknown."""
    found: list[str] = []
    unknown: list[str] = []
    i = 0
    while i < len(words):
        for length in (3, 2, 1):
            name = " ".join(words[i : i + length])
            if len(words) - i >= length and name in known:
                found.append(name)
                i += length
                break
        else:
            unknown.append(words[i])
            i += 1
    return list(dict.fromkeys(found)), unknown


async def set_commands(cmd: AdminCommands, ctx: HandlerContext) -> None:
    """Allow or deny some of a backend's commands, or allow all again."""
    if await _admin_policy(ctx) is None or not await _known_backend(ctx, cmd.backend):
        return
    backend, display = cmd.backend, ctx.keys.display(cmd.backend)
    if cmd.action == "reset":

        def reset(value: Any) -> dict[str, list[str]]:
            everything = _copied(_decoded("commands", value).commands)
            everything.pop(backend, None)
            return everything

        await _change(ctx, "commands", reset, f"commands {backend}: all")
        await _say(ctx, f"Every {display} command is allowed again.")
        return
    known = _gate(ctx).gated_commands(cmd.backend)
    names, unknown = _command_names(cmd.commands, known)
    if unknown:
        await _refuse(
            ctx,
            "usage",
            f"{display} has no command {_listed(unknown)} that a policy can {cmd.action} "
            "(help and key commands are always allowed).",
            f"Its commands: {_listed(known)}.",
        )
        return
    allow = cmd.action == "allow"

    def edit(value: Any) -> dict[str, list[str]]:
        everything = _copied(_decoded("commands", value).commands)
        current = everything.get(backend)
        if allow and current is None:
            raise _Unchanged(f"Every {display} command is already allowed.")
        allowed = list(current if current is not None else known)
        if allow:
            allowed += [n for n in names if n not in allowed]
        else:
            allowed = [n for n in allowed if n not in names]
        everything[backend] = allowed
        return everything

    detail = f"commands {backend}: {cmd.action} {', '.join(names)}"
    everything = await _change(ctx, "commands", edit, detail)
    if everything is not SKIPPED:
        await _say(ctx, f"{display} commands allowed now: {_listed(everything[backend])}.")


async def set_models(cmd: AdminModels, ctx: HandlerContext) -> None:
    """Allow only the listed models of a backend (adding to the list), or any again."""
    if await _admin_policy(ctx) is None or not await _known_backend(ctx, cmd.backend):
        return
    backend, display = cmd.backend, ctx.keys.display(cmd.backend)
    reset = cmd.action == "reset"

    def edit(value: Any) -> dict[str, list[str]]:
        everything = _copied(_decoded("models", value).models)
        if reset:
            everything.pop(backend, None)
            return everything
        current = everything.get(backend, [])
        folded = {m.casefold() for m in current}
        everything[backend] = current + [m for m in cmd.models if m.casefold() not in folded]
        return everything

    if reset:
        await _change(ctx, "models", edit, f"models {backend}: any")
        await _say(ctx, f"Any {display} model is allowed again.")
        return
    everything = await _change(
        ctx, "models", edit, f"models {backend}: allow {', '.join(cmd.models)}"
    )
    current = everything[backend]
    await _say(
        ctx,
        f"Only these {display} models are allowed now: {_listed(current)} "
        f"(`/tokenbot admin models {cmd.backend.replace('_', '-')} reset` allows any).",
    )


async def set_channel_model(cmd: AdminChannelModel, ctx: HandlerContext) -> None:
    """This channel's default model for a backend's chat, or clear it."""
    policy = await _admin_policy(ctx)
    if policy is None or not await _known_backend(ctx, cmd.backend):
        return
    display = ctx.keys.display(cmd.backend)
    target = _gate(ctx).chat_command(cmd.backend)
    if target is None:
        await _refuse(ctx, "usage", f"{display} commands take no model a channel could default.")
        return
    channel, backend, model = ctx.inbound.channel, cmd.backend, cmd.model

    def edit(value: Any) -> dict[str, dict[str, str]]:
        everything = {
            c: dict(m) for c, m in _decoded("channel_models", value).channel_models.items()
        }
        here = everything.setdefault(channel, {})
        if model is None:
            here.pop(backend, None)
        else:
            here[backend] = model
        if not here:
            everything.pop(channel)
        return everything

    if model is None:
        await _change(ctx, "channel_models", edit, f"channel model {channel} {backend}: cleared")
        await _say(ctx, f"This channel has no default {display} model now.")
        return
    # (The allowed models are another key, read as they were when the command came in.)
    allowed = policy.models.get(cmd.backend)
    if allowed is not None and model.casefold() not in {m.casefold() for m in allowed}:
        await _refuse(
            ctx,
            "policy_model",
            f"`{model}` is not an allowed {display} model here.",
            f"Allowed: {_listed(allowed)}; allow it first with `/tokenbot admin models`.",
        )
        return
    await _change(ctx, "channel_models", edit, f"channel model {channel} {backend}: {model}")
    await _say(ctx, f"`{target}` commands in this channel that name no model use `{model}` now.")


# --- budgets ------------------------------------------------------------------------------------


async def set_budget(cmd: BudgetCap, ctx: HandlerContext) -> None:
    """One of the caps in USD, or off."""
    if await _admin_policy(ctx) is None:
        return
    field, label = BUDGET_FIELDS[type(cmd)]
    cap = None if cmd.usd is None else f"{cmd.usd:.2f}"
    shown = "off" if cmd.usd is None else f"${cmd.usd:.2f}"

    def edit(value: Any) -> dict[str, Any]:
        return {**_decoded("budget", value).budget, field: cap}

    await _change(ctx, "budget", edit, f"budget {field}: {shown}")
    text = f"{label.capitalize()} is {shown} now."
    if cmd.usd is not None:
        text += " It caps calls made with the workspace key (and own keys of members who opted in)."
    await _say(ctx, text)


async def own_keys(cmd: OwnKeysOptIn, ctx: HandlerContext) -> None:
    """The caller's own opt-in: their own-key calls count against the caps, or not."""
    me, on = ctx.inbound.user, cmd.on

    def edit(value: Any) -> dict[str, Any]:
        budget = _decoded("budget", value).budget
        listed = budget.get("own_key_opt_in")
        users = [str(u) for u in listed] if isinstance(listed, list) else []
        if (me in users) == on:
            state = "already count" if on else "already don't count"
            raise _Unchanged(f"Your own-key calls {state} against the caps.")
        return {**budget, "own_key_opt_in": [*users, me] if on else [u for u in users if u != me]}

    if (
        await _change(ctx, "budget", edit, f"budget own-key opt-in: {'on' if on else 'off'}")
        is SKIPPED
    ):
        return
    await _say(
        ctx,
        "Your calls with your own keys now count against the workspace's caps."
        if cmd.on
        else "Your calls with your own keys no longer count against the caps.",
    )


# --- workspace keys -------------------------------------------------------------------------------


async def workspace_key(cmd: AdminWorkspaceKey, ctx: HandlerContext) -> None:
    """Open the private form for a backend's workspace key, or clear it. Never a key in text."""
    policy = await _admin_policy(ctx)
    if policy is None or not await _known_backend(ctx, cmd.backend):
        return
    spec = ctx.keys.get(cmd.backend)
    if spec is None:
        await _refuse(
            ctx, "usage", f"{ctx.keys.display(cmd.backend)} has no key a workspace could share."
        )
        return
    if cmd.backend not in LENDABLE_SERVICES and not cmd.clear:
        # Such a key would be stored and never used: calls with it manage the account itself.
        await _refuse(
            ctx,
            "usage",
            f"A {spec.display} key is not shared with the workspace: it manages its owner's own "
            "account (credits, keys), so it is never lent.",
            "Workspace keys are for "
            + ", ".join(ctx.keys.display(s) for s in sorted(LENDABLE_SERVICES))
            + "; each member sets their own "
            + f"{spec.display} key.",
        )
        return
    inbound = ctx.inbound
    if cmd.clear:
        removed = await ctx.store.delete_workspace_key(
            inbound.platform, inbound.workspace, cmd.backend
        )
        if removed:
            await _audit(ctx, f"workspace key {cmd.backend}: cleared")
        await _say(
            ctx,
            f"Removed the {spec.display} workspace key."
            if removed
            else f"There was no {spec.display} workspace key.",
            "success" if removed else "info",
        )
        return
    await ctx.conversation.request_form(
        FormRequest(
            form_id=WORKSPACE_KEY_FORM + cmd.backend,
            title=f"{spec.display} team key"[:24],
            intro="Stored encrypted; members without a key of their own use it, within the caps.",
            fields=[FormField(name="key", label=f"The workspace's {spec.display} key")],
        )
    )


async def _check(ctx: HandlerContext, service: str, secret: str) -> bool:
    spec = ctx.keys.get(service)
    if spec is None or key_service(secret) != service:
        prefix = spec.prefix if spec else "?"
        await _refuse(
            ctx,
            "usage",
            f"That is not a {ctx.keys.display(service)} key, so it was not stored.",
            f"Its keys start with {prefix}; copy it again.",
        )
        return False
    if spec.check is None:
        return True
    try:
        await spec.check(secret)
    except BackendError as exc:
        failure = spec.render(exc) if spec.render else generic_failure(exc, spec.display)
        await ctx.conversation.whisper([failure])
        return False
    return True


def workspace_key_form(service: str) -> Callable[[HandlerContext, dict[str, str]], Awaitable[bool]]:
    """The private form's submission: admin checked again, the key's shape and a cheap call, stored."""

    async def submit(ctx: HandlerContext, values: dict[str, str]) -> bool:
        if await _admin_policy(ctx) is None:
            return False
        secret = values.get("key", "").strip()
        if not secret:
            await _say(ctx, "Nothing entered; no key stored.", "info")
            return False
        if not await _check(ctx, service, secret):
            return False
        inbound = ctx.inbound
        await ctx.store.put_workspace_key(
            inbound.platform, inbound.workspace, service, secret, by_user=inbound.user
        )
        await _audit(ctx, f"workspace key {service}: set {fingerprint(secret)}")
        await _say(
            ctx,
            f"Stored the {ctx.keys.display(service)} workspace key {fingerprint(secret)} (encrypted). "
            "Members without their own key use it, within the workspace's caps.",
        )
        return True

    return submit
