"""`/alltoken-key`: store, inspect and remove the caller's own keys. Never echoes them."""

from __future__ import annotations

from typing import Literal

from bot.backends.alltoken.spec import KeyCommand
from bot.core.context import HandlerContext
from bot.core.key_forms import store_key
from bot.core.messages import FormField, FormRequest, Notice
from bot.core.secret_refusal import typed_in_public


async def key(cmd: KeyCommand, ctx: HandlerContext) -> None:
    """Dispatch the key sub-actions; every answer is private."""
    name = ctx.keys.display(cmd.service)
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
        info = await ctx.store.credential_info(ctx.owner, cmd.service)
        level: Literal["info", "warning"] = "info"
        if info is None:
            text = f"No {name} key stored for you. Use `/alltoken-key` to add one privately."
        elif not info.readable:
            level = "warning"
            text = (
                f"Your {name} key {info.fingerprint} is stored (last set "
                f"{info.updated_at:%Y-%m-%d %H:%M} UTC) but cannot be read: the bot's master key "
                "changed since then (or the stored copy is damaged), so commands can't use it. "
                + f"Set it again. {ctx.keys.hint(cmd.service)}".strip()
            )
        else:
            text = (
                f"Your {name} key {info.fingerprint} is stored (encrypted), "
                f"last set {info.updated_at:%Y-%m-%d %H:%M} UTC."
            )
        await ctx.conversation.whisper([Notice(level=level, text=text)])
        return
    if cmd.action == "remove":
        removed = await ctx.store.delete_credential(ctx.owner, cmd.service)
        text = f"Removed your {name} key." if removed else f"You had no {name} key stored."
        await ctx.conversation.whisper([Notice(level="success" if removed else "info", text=text)])
        return
    assert cmd.key is not None  # the router guarantees a value for "set"
    if typed_in_public(ctx.inbound):
        # Seen by everyone in the channel: the app already told the user to rotate it.
        return
    await store_key(ctx, cmd.service, cmd.key.get_secret_value())
