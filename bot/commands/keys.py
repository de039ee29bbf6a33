"""`/alltoken-key`: store, inspect and remove the caller's own key. Never echoes it."""

from __future__ import annotations

from bot.command_models import KeyCommand
from bot.commands.context import HandlerContext
from bot.failures import render_failure
from bot.family import FormHandler
from bot.key_shapes import fingerprint
from bot.messages import Failure, FormField, FormRequest, Notice
from bot.services.errors import BackendError

SERVICE_NAMES = {
    "alltoken": "AllToken",
    "openmarlin": "OpenMarlin",
    "openclaw_token": "OpenClaw Token",
    "openclaw_proxy": "OpenClaw Token provisioned",
}


def typed_in_public(ctx: HandlerContext) -> bool:
    """A key typed as an ordinary channel message has been seen by everyone there."""
    return (
        not ctx.inbound.is_direct
        and ctx.inbound.command is None
        and ctx.inbound.platform != "console"
    )


async def key(cmd: KeyCommand, ctx: HandlerContext) -> None:
    """Dispatch the key sub-actions; every answer is private."""
    name = SERVICE_NAMES[cmd.service]
    if cmd.action == "prompt":
        await ctx.conversation.request_form(
            FormRequest(
                form_id=f"key.{cmd.service}",
                title=f"{name} key"[:24],
                intro="Stored encrypted, used only for your own commands, never shown again.",
                fields=[
                    FormField(
                        name="key",
                        label=f"Your {name} API key",
                        placeholder="sk-at-…" if cmd.service == "alltoken" else "",
                    )
                ],
            )
        )
        return
    if cmd.action == "status":
        info = await ctx.bot.store.credential_info(ctx.owner, cmd.service)
        if info is None:
            text = f"No {name} key stored for you. Use `/alltoken-key` to add one privately."
        else:
            text = (
                f"Your {name} key {info.fingerprint} is stored (encrypted), "
                f"last set {info.updated_at:%Y-%m-%d %H:%M} UTC."
            )
        await ctx.conversation.whisper([Notice(level="info", text=text)])
        return
    if cmd.action == "remove":
        removed = await ctx.bot.store.delete_credential(ctx.owner, cmd.service)
        text = f"Removed your {name} key." if removed else f"You had no {name} key stored."
        await ctx.conversation.whisper([Notice(level="success" if removed else "info", text=text)])
        return
    assert cmd.key is not None  # the router guarantees a value for "set"
    if typed_in_public(ctx):
        # Seen by everyone in the channel: the app already told the user to rotate it.
        return
    await store_key(ctx, cmd.service, cmd.key.get_secret_value())


async def store_key(ctx: HandlerContext, service: str, secret: str) -> bool:
    """Check the key with a cheap authenticated call, then store it encrypted."""
    name = SERVICE_NAMES.get(service, service)
    secret = secret.strip()
    if service == "alltoken":
        try:
            await ctx.bot.services.alltoken.check_key(secret)
        except BackendError as exc:
            failure = render_failure(exc)
            if exc.status == 401:
                failure = Failure(
                    code=exc.code,
                    message=f"{name} refused that key, so it was not stored.",
                    request_id=exc.request_id,
                    hint="Copy the key again from your AllToken dashboard and retry.",
                )
            await ctx.conversation.whisper([failure])
            return False
    await ctx.bot.store.put_credential(ctx.owner, service, secret)
    await ctx.conversation.whisper(
        [
            Notice(
                level="success",
                text=f"Stored your {name} key {fingerprint(secret)} for you (encrypted).",
            )
        ]
    )
    return True


def key_form_handler(service: str) -> FormHandler:
    """The submission of the private key form for `service`."""

    async def submit(ctx: HandlerContext, values: dict[str, str]) -> bool:
        value = values.get("key", "").strip()
        if not value:
            await ctx.conversation.whisper(
                [Notice(level="info", text="Nothing entered; no key stored.")]
            )
            return False
        return await store_key(ctx, service, value)

    return submit
