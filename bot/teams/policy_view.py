"""`/tokenbot policy`: the rules in effect in the current channel, for anyone, privately."""

from __future__ import annotations

from bot.core.context import HandlerContext
from bot.core.messages import Fields, Notice, Part
from bot.teams.gate import TeamsGate, WorkspacePolicy, admins_of, load_policy, operator_admins
from bot.teams.spec import PolicyShow
from bot.teams.spend_control import LENDABLE_SERVICES

_BUDGET_ROWS = (
    ("workspace_monthly_usd", "Workspace budget (UTC month)"),
    ("user_daily_usd", "Per-member cap (UTC day)"),
    ("user_monthly_usd", "Per-member cap (UTC month)"),
)


def _channel_row(ctx: HandlerContext, policy: WorkspacePolicy) -> tuple[str, str]:
    if policy.channels is None:
        return "Channels", "everywhere (direct messages too)"
    inbound = ctx.inbound
    here = (
        "allowed" if not inbound.is_direct and inbound.channel in policy.channels else "not allowed"
    )
    listed = ", ".join(f"`{c}`" for c in policy.channels) or "none"
    return "Channels", f"only {listed} — here: {here}"


def _backend_rows(
    ctx: HandlerContext, policy: WorkspacePolicy, gate: TeamsGate | None
) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    families = sorted({*(gate.catalog if gate else {}), *policy.commands, *policy.models})
    defaults = policy.channel_models.get(ctx.inbound.channel, {})
    for family in families:
        name = ctx.keys.display(family)
        commands = policy.commands.get(family)
        rows.append(
            (
                f"{name} commands",
                "all" if commands is None else ", ".join(f"`{c}`" for c in commands) or "none",
            )
        )
        models = policy.models.get(family)
        rows.append(
            (f"{name} models", "any" if models is None else ", ".join(f"`{m}`" for m in models))
        )
        if family in defaults:
            target = gate.chat_command(family) if gate else None
            where = f" (for `{target}`)" if target else ""
            rows.append((f"{name} default model here", f"`{defaults[family]}`{where}"))
    return rows


def _budget_rows(ctx: HandlerContext, policy: WorkspacePolicy) -> list[tuple[str, str]]:
    rows = []
    for key, label in _BUDGET_ROWS:
        value = policy.budget.get(key)
        rows.append((label, f"${value}" if value else "off"))
    opted = ctx.inbound.user in {str(u) for u in policy.budget.get("own_key_opt_in") or []}
    rows.append(
        (
            "Your own-key calls",
            "count against the caps (`/tokenbot budget own-keys off` to stop)"
            if opted
            else "not capped (`/tokenbot budget own-keys on` to count them)",
        )
    )
    return rows


async def _key_rows(ctx: HandlerContext, gate: TeamsGate | None) -> list[tuple[str, str]]:
    inbound = ctx.inbound
    rows = []
    for family in sorted(gate.catalog if gate else {}):
        if ctx.keys.get(family) is None or family not in LENDABLE_SERVICES:
            continue  # no key, or one that is never lent (OpenClaw Token's manage the account)
        info = await ctx.store.workspace_key_info(inbound.platform, inbound.workspace, family)
        rows.append(
            (f"{ctx.keys.display(family)} workspace key", "set" if info is not None else "none")
        )
    return rows


async def show_policy(cmd: PolicyShow, ctx: HandlerContext) -> None:
    """Admins, channels, commands, models, this channel's defaults, budgets, workspace keys."""
    policy = await load_policy(ctx)
    gate = ctx.services.find(TeamsGate)
    admins = admins_of(ctx, policy)
    operators = set(operator_admins(ctx))
    shown = [f"`{a}`" + (" (TOKENBOT_ADMINS)" if a in operators else "") for a in admins]
    rows = [
        ("Admins", ", ".join(shown) or "none (the operator names them in TOKENBOT_ADMINS)"),
        _channel_row(ctx, policy),
        *_backend_rows(ctx, policy, gate),
        *_budget_rows(ctx, policy),
        *await _key_rows(ctx, gate),
    ]
    parts: list[Part] = [Fields(title="tokenbot policy for this channel", rows=rows)]
    parts.append(
        Notice(
            level="info", text="Admins change it with `/tokenbot admin …` (`/tokenbot help admin`)."
        )
    )
    await ctx.conversation.whisper(parts)
