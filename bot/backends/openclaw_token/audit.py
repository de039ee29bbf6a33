"""`/openclaw-token audit show`: the caller's recent operations across all services; admins
(TOKENBOT_ADMINS) may add `--all` to see everyone's, which is refused to anyone else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.backends.openclaw_token.common import private
from bot.backends.openclaw_token.render import audit_fields, json_block
from bot.backends.openclaw_token.spec import AuditShow
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.failures import HandledFailure
from bot.core.messages import Failure


def is_admin(ctx: HandlerContext) -> bool:
    """Whether TOKENBOT_ADMINS names the caller (a user id, or platform:user id)."""
    admins = ctx.settings.admin_ids
    inbound = ctx.inbound
    return inbound.user in admins or f"{inbound.platform}:{inbound.user}" in admins


async def audit_show(
    cmd: AuditShow,
    ctx: HandlerContext,
    before: Callable[[HandlerContext], Awaitable[None]] | None = None,
) -> None:
    """Time, command, outcome and request id of recent operations.

    `before` runs first: it records the Confirm prompts that expired unclicked meanwhile.
    """
    if before is not None:
        await before(ctx)
    if cmd.everyone and not is_admin(ctx):
        await private(
            ctx,
            [
                Failure(
                    code="admin_only",
                    message="Only tokenbot admins can see everyone's operations.",
                    hint="Leave out `--all` to see your own.",
                )
            ],
        )
        # Recorded as a refused request, not as a successful one.
        raise HandledFailure(BackendError("openclaw_token", 403, "admin_only", "admins only"))
    entries = await ctx.store.list_audit(None if cmd.everyone else ctx.owner, cmd.limit)
    if cmd.as_json:
        await private(ctx, [json_block([e.model_dump(mode="json") for e in entries])])
        return
    await private(ctx, [audit_fields(entries, everyone=cmd.everyone)])
