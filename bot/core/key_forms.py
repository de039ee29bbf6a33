"""Storing a caller's key: its shape checked before anything is sent, then a cheap call, then
the encrypted row. The private key forms of every family submit here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.failures import generic_failure
from bot.core.key_shapes import fingerprint, key_service
from bot.core.keys import KeyService
from bot.core.messages import Failure, Notice


def _article(name: str) -> str:
    return "an" if name[:1].lower() in "aeiou" else "a"


async def _refused(ctx: HandlerContext, spec: KeyService, exc: BackendError) -> None:
    failure = spec.render(exc) if spec.render else generic_failure(exc, spec.display)
    if exc.status == 401:
        failure = Failure(
            code=exc.code,
            message=f"{spec.display} refused that key, so it was not stored.",
            request_id=exc.request_id,
            hint=spec.refused_hint,
        )
    await ctx.conversation.whisper([failure])


async def store_key(ctx: HandlerContext, service: str, secret: str) -> bool:
    """Check the key's shape (and, where the family has one, a cheap call), then store it encrypted."""
    spec = ctx.keys.get(service)
    name = ctx.keys.display(service)
    secret = secret.strip()
    if spec is None or key_service(secret) != service:
        # Checked before any request: pasted text that is not a key is never sent as a header.
        prefix = spec.prefix if spec else "?"
        await ctx.conversation.whisper(
            [
                Failure(
                    code="usage",
                    message=f"That is not {_article(name)} {name} key, so it was not stored.",
                    hint=f"{name} keys start with {prefix}; copy it again.",
                )
            ]
        )
        return False
    if spec.check is not None:
        try:
            await spec.check(secret)
        except BackendError as exc:
            await _refused(ctx, spec, exc)
            return False
    await ctx.store.put_credential(ctx.owner, service, secret)
    await ctx.conversation.whisper(
        [
            Notice(
                level="success",
                text=f"Stored your {name} key {fingerprint(secret)} for you (encrypted).",
            )
        ]
    )
    return True


def key_form_handler(service: str) -> Callable[[HandlerContext, dict[str, str]], Awaitable[bool]]:
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
