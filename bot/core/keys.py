"""`/alltoken-key`: store, inspect and remove the caller's own key. Never echoes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from bot.backends.alltoken.spec import KeyCommand
from bot.core.context import KEY_HINTS, HandlerContext
from bot.core.errors import Backend, BackendError
from bot.core.failures import render_failure
from bot.core.family import FormHandler
from bot.core.key_shapes import fingerprint, key_service
from bot.core.messages import Failure, FormField, FormRequest, Notice
from bot.store import CredentialUnreadableError

if TYPE_CHECKING:
    from bot.backends.alltoken.handlers import HandledFailure
SERVICE_NAMES = {
    "alltoken": "AllToken",
    "openmarlin": "OpenMarlin",
    "openclaw_token": "OpenClaw Token",
    "openclaw_proxy": "OpenClaw Token provisioned",
}


_BACKENDS: dict[str, Backend] = {
    "alltoken": "alltoken",
    "openmarlin": "openmarlin",
    "openclaw_token": "openclaw_token",
    "openclaw_proxy": "openclaw_token",
}
UNREADABLE_CODE = "key_unreadable"


def _set_again_hint(service: str) -> str:
    hint = KEY_HINTS.get(service) or KEY_HINTS.get("openclaw_token", "")
    return f"Set it again. {hint}".strip()


def unreadable_key_failure(service: str) -> Failure:
    """What the user is told when their stored key no longer decrypts (master key changed)."""
    name = SERVICE_NAMES.get(service, service)
    return Failure(
        code=UNREADABLE_CODE,
        message=(
            f"Your {name} key is stored but tokenbot cannot read it: the bot's master key "
            "changed since it was stored (or the stored copy is damaged), so it was not used."
        ),
        hint=_set_again_hint(service)
        + " If this happens to everyone, tell the bot's operator (the master key changed).",
    )


async def report_unreadable_key(
    ctx: HandlerContext, exc: CredentialUnreadableError
) -> HandledFailure:
    """Tell the caller privately; returns the exception for the app to record as handled."""
    from bot.backends.alltoken.handlers import (
        HandledFailure,  # imported late: alltoken imports this chain
    )

    failure = unreadable_key_failure(exc.service)
    await ctx.conversation.whisper([failure])
    error = BackendError(
        _BACKENDS.get(exc.service, "alltoken"), 0, UNREADABLE_CODE, failure.message
    )
    return HandledFailure(error)


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
        level: Literal["info", "warning"] = "info"
        if info is None:
            text = f"No {name} key stored for you. Use `/alltoken-key` to add one privately."
        elif not info.readable:
            level = "warning"
            text = (
                f"Your {name} key {info.fingerprint} is stored (last set "
                f"{info.updated_at:%Y-%m-%d %H:%M} UTC) but cannot be read: the bot's master key "
                "changed since then (or the stored copy is damaged), so commands can't use it. "
                + _set_again_hint(cmd.service)
            )
        else:
            text = (
                f"Your {name} key {info.fingerprint} is stored (encrypted), "
                f"last set {info.updated_at:%Y-%m-%d %H:%M} UTC."
            )
        await ctx.conversation.whisper([Notice(level=level, text=text)])
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


_PREFIXES = {
    "alltoken": "sk-at-",
    "openmarlin": "claw_wsk_",
    "openclaw_token": "sk-mgmt-",
    "openclaw_proxy": "sk-prov-",
}


def _article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"


async def store_key(ctx: HandlerContext, service: str, secret: str) -> bool:
    """Check the key with a cheap authenticated call, then store it encrypted."""
    name = SERVICE_NAMES.get(service, service)
    secret = secret.strip()
    if key_service(secret) != service:
        # Checked before any request: pasted text that is not a key is never sent as a header.
        await ctx.conversation.whisper(
            [
                Failure(
                    code="usage",
                    message=f"That is not {_article(name)} {name} key, so it was not stored.",
                    hint=f"{name} keys start with {_PREFIXES.get(service, '?')}; copy it again.",
                )
            ]
        )
        return False
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
