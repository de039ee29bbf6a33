"""`/openclaw-token integrate`: choose the provisioned key that answers AllToken chat and
search when the caller's AllToken balance runs out; `--status`; `--remove`.

Without a hash a new key is provisioned for the purpose and stored at once (its value is never
shown). With a hash, the key's value (shown only when it was created or rotated) is asked for
through a private form, as the server cannot hand it out again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.backends.openclaw_token.common import (
    MGMT,
    PROXY,
    management_key,
    private,
    service,
    show,
)
from bot.backends.openclaw_token.keys import key_failures_shown, missing_key_failure
from bot.backends.openclaw_token.render import (
    json_block,
    key_status,
    limit_text,
    refusal_from_meta,
    usd,
)
from bot.backends.openclaw_token.service import NewKey
from bot.backends.openclaw_token.spec import Integrate
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.family import FormHandler
from bot.core.key_shapes import fingerprint, key_service
from bot.core.messages import Failure, Fields, FormField, FormRequest, Notice
from bot.store import Owner

INTEGRATE_FORM = "openclaw.integrate"
PROVIDER_NAME = "openclaw-token-fallback"
FORM_TTL_S = 15 * 60.0
COVERS = "AllToken chat and search (images and videos have no fallback)"
_CMD = "/openclaw-token"


@dataclass
class PendingIntegrations:
    """Which key each person's open integrate form is for (the form carries only the value)."""

    ttl_s: float = FORM_TTL_S
    clock: Callable[[], float] = time.monotonic
    _open: dict[Owner, tuple[str, float]] = field(default_factory=dict)

    def open(self, owner: Owner, key_hash: str) -> None:
        """Remember the key a form was opened for."""
        self._open[owner] = (key_hash, self.clock())

    def take(self, owner: Owner) -> str | None:
        """The hash of the key the submitted form is for, once."""
        found = self._open.pop(owner, None)
        if found is None or self.clock() - found[1] > self.ttl_s:
            return None
        return found[0]


async def integrate(cmd: Integrate, ctx: HandlerContext, pending: PendingIntegrations) -> None:
    """Set, show or remove the fallback."""
    if cmd.action == "status":
        await status(cmd, ctx)
        return
    if cmd.action == "remove":
        removed = await ctx.store.delete_credential(ctx.owner, PROXY)
        text = (
            "Removed your OpenClaw Token fallback: AllToken chat and search no longer fall back "
            "(the key itself still exists; revoke it with `keys revoke`)."
            if removed
            else "You had no OpenClaw Token fallback set."
        )
        await private(ctx, [Notice(level="success" if removed else "info", text=text)])
        return
    key = await management_key(ctx)
    svc = service(ctx)
    if cmd.hash:
        # The form opens at once (a Slack modal must open within 3 s of the command);
        # the key is checked when the value comes back.
        pending.open(ctx.owner, cmd.hash)
        await ctx.conversation.request_form(
            FormRequest(
                form_id=INTEGRATE_FORM,
                title="OpenClaw fallback key",
                submit_label="Use as fallback",
                intro=f"Paste the value of key {cmd.hash}, shown when it was created or rotated. "
                "It is stored encrypted and used only for your own AllToken chat and search "
                "when your AllToken balance is empty.",
                fields=[FormField(name="key", label="Provisioned key (sk-prov-…)", secret=True)],
            )
        )
        return
    new = NewKey(name=cmd.name, credit_limit=cmd.credit_limit, limit_reset=cmd.limit_reset)
    try:
        created = await svc.create_key(key, new)
    except BackendError as exc:
        if exc.code != "KEY_NAME_EXISTS":
            raise
        ctx.request_id = exc.request_id
        await private(
            ctx,
            [
                Failure(
                    code=exc.code,
                    message=f"You already have a key named {cmd.name!r}.",
                    request_id=exc.request_id,
                    hint=f"Use it with `{_CMD} integrate <its hash>` (see `keys list`), or give "
                    "another `--name`.",
                )
            ],
        )
        return
    ctx.request_id = created.request_id
    await ctx.store.put_credential(
        ctx.owner, PROXY, created.key or "", meta={"hash": created.hash, "name": created.name}
    )
    await private(
        ctx,
        [
            Notice(
                level="success",
                text=f"Created key {created.name} ({created.hash}) and made it your fallback for "
                f"{COVERS}. Its value is stored encrypted and not shown.",
            ),
            Fields(
                title="Fallback key",
                rows=[("credit limit", limit_text(created)), ("proxy", svc.proxy_url)],
            ),
        ],
    )


def integrate_form(pending: PendingIntegrations) -> FormHandler:
    """The submitted key value for `integrate <hash>`."""

    async def submit(ctx: HandlerContext, values: dict[str, str]) -> bool:
        value = values.get("key", "").strip()
        target = pending.take(ctx.owner)
        if target is None:
            await private(
                ctx,
                [
                    Notice(
                        level="warning",
                        text=f"That form expired; run `{_CMD} integrate <hash>` again.",
                    )
                ],
            )
            return False
        if key_service(value) != "openclaw_proxy":
            await private(
                ctx,
                [
                    Failure(
                        code="not_a_provisioned_key",
                        message="That is not an OpenClaw Token provisioned key "
                        "(sk-prov- followed by 32 hex characters); nothing was stored.",
                        hint=f"Copy the value shown by `keys create` or `keys rotate`, or run "
                        f"`{_CMD} integrate` to create a fallback key.",
                    )
                ],
            )
            return False
        key_hash = target
        mgmt = await ctx.store.get_credential(ctx.owner, MGMT)
        if not mgmt:
            await private(ctx, [Notice(level="warning", text="You signed out of OpenClaw Token.")])
            return False
        try:
            detail = await service(ctx).key_info(mgmt, key_hash)
        except BackendError as exc:
            await private(ctx, [await missing_key_failure(service(ctx), mgmt, key_hash, exc)])
            return False
        state = key_status(detail)
        if state != "active":
            await private(
                ctx,
                [
                    Failure(
                        code=f"key_{state}",
                        message=f"Key {detail.name} ({key_hash}) is {state}; it can't answer, "
                        "so nothing was stored.",
                        hint=f"Pick an active key from `{_CMD} keys list`, or run "
                        f"`{_CMD} integrate` to create one.",
                    )
                ],
            )
            return False
        await ctx.store.put_credential(
            ctx.owner, PROXY, value, meta={"hash": key_hash, "name": detail.name}
        )
        await private(
            ctx,
            [
                Notice(
                    level="success",
                    text=f"Key {detail.name} ({key_hash}, {fingerprint(value)}) is now your "
                    f"fallback for {COVERS}.",
                )
            ],
        )
        return True

    return submit


async def status(cmd: Integrate, ctx: HandlerContext) -> None:
    """Whether a fallback is set, which key, and where it stands against its limit."""
    svc = service(ctx)
    info = await ctx.store.credential_info(ctx.owner, PROXY)
    data: dict[str, Any] = {
        "installed": True,
        "integrated": info is not None,
        "provider_name": PROVIDER_NAME,
        "proxy_url": svc.proxy_url,
    }
    if info is None:
        if cmd.as_json:
            await private(ctx, [json_block(data)])
            return
        await private(
            ctx,
            [
                Notice(
                    level="info",
                    text=f"No OpenClaw Token fallback is set. `{_CMD} integrate` creates a key "
                    f"for it; `{_CMD} integrate <hash>` uses one you have.",
                )
            ],
        )
        return
    key_hash = info.meta.get("hash", "")
    data.update(hash=key_hash, name=info.meta.get("name"), fingerprint=info.fingerprint)
    rows = [
        ("key", f"{info.meta.get('name', '?')} ({key_hash}, {info.fingerprint})"),
        ("covers", COVERS),
        ("proxy", svc.proxy_url),
    ]
    mgmt = await ctx.store.get_credential(ctx.owner, MGMT)
    if mgmt and key_hash:
        async with key_failures_shown(ctx, mgmt, key_hash):
            detail = await svc.key_info(mgmt, key_hash)
        data.update(status=key_status(detail), key=detail.model_dump(mode="json"))
        rows += [
            ("status", key_status(detail)),
            ("credit limit", limit_text(detail)),
            ("used against the limit (server's figure)", usd(detail.period_usage())),
        ]
        refusal = refusal_from_meta(info.meta, key_hash)
        if refusal is not None and refusal.holds(detail, datetime.now(UTC)):
            rows.append(("limit left", refusal.text()))
        ctx.request_id = detail.request_id
    await show(ctx, cmd.as_json, data, [Fields(title="AllToken fallback: on", rows=rows)])
