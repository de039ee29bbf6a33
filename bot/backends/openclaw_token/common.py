"""What every `/openclaw-token` handler shares: the service, the key, private replies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from bot.backends.openclaw_token.render import json_block, render_openclaw_failure
from bot.backends.openclaw_token.service import OpenClawTokenService
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.failures import HandledFailure
from bot.core.messages import Part
from bot.store import AuditEntry, Owner

MGMT = "openclaw_token"  # credential service of the management key (sk-mgmt-…)
PROXY = "openclaw_proxy"  # credential service of the fallback provisioned key (sk-prov-…)


def service(ctx: HandlerContext) -> OpenClawTokenService:
    """The OpenClaw Token client the family attached."""
    svc = ctx.services.get(OpenClawTokenService)
    return svc


async def management_key(ctx: HandlerContext) -> str:
    """The caller's management key, or MissingKey (answered privately by the app)."""
    return await ctx.require_key(MGMT)


async def private(ctx: HandlerContext, parts: Sequence[Part]) -> None:
    """Account data is personal: only the caller sees it."""
    await ctx.conversation.whisper(parts)


async def show(
    ctx: HandlerContext, as_json: bool, data: Any, parts: Sequence[Part], *, keep_key: bool = False
) -> None:
    """The table (or, with --json, the raw data), privately; notes the request id."""
    request_id = getattr(data, "request_id", None)
    if request_id:
        ctx.request_id = request_id
    await private(ctx, [json_block(data, keep_key=keep_key)] if as_json else parts)


@asynccontextmanager
async def failures_shown(ctx: HandlerContext, key_hash: str | None = None) -> AsyncIterator[None]:
    """A BackendError inside becomes a private, plain failure reply (and HandledFailure)."""
    try:
        yield
    except BackendError as exc:
        ctx.request_id = exc.request_id
        await private(ctx, [render_openclaw_failure(exc, key_hash)])
        raise HandledFailure(exc) from None


async def audit(
    ctx: HandlerContext,
    command: str,
    outcome: str,
    detail: str | None = None,
    request_id: str | None = None,
    owner: Owner | None = None,
) -> None:
    """An audit row for work the app does not audit itself (button clicks, forms' details)."""
    await ctx.store.audit(
        AuditEntry(
            owner=owner or ctx.owner,
            command=command,
            outcome=outcome,
            detail=detail,
            request_id=request_id,
        )
    )
