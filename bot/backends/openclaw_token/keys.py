"""`/openclaw-token keys …`: create (value shown once, privately), list, info, update,
rotate / revoke / revoke-all (confirmed), usage — with `--watch`, one message updated every
N seconds for at most 10 minutes by a supervised job with a Stop button.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from bot.backends.openclaw_token.common import (
    MGMT,
    PROXY,
    failures_shown,
    management_key,
    private,
    service,
    show,
)
from bot.backends.openclaw_token.confirm import Confirmations, confirm_buttons
from bot.backends.openclaw_token.job_state import UsageWatchState
from bot.backends.openclaw_token.render import (
    SeenRefusal,
    apply_filter,
    detail_parts,
    json_block,
    key_fields,
    keys_table,
    refusal_from_meta,
    render_openclaw_failure,
    sort_keys,
    usage_fields,
    without_refusal,
)
from bot.backends.openclaw_token.service import KeyDetail, NewKey, OpenClawTokenService
from bot.backends.openclaw_token.spec import (
    KeysCreate,
    KeysInfo,
    KeysList,
    KeysRevoke,
    KeysRevokeAll,
    KeysRotate,
    KeysUpdate,
    KeysUsage,
)
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.failures import HandledFailure
from bot.core.http import PollBackoff
from bot.core.job_errors import JobFailed
from bot.core.jobs import JobContext
from bot.core.messages import (
    Actions,
    Button,
    Failure,
    Fields,
    MessageRef,
    Notice,
    Part,
    Text,
)
from bot.store import Owner, Store

log = logging.getLogger(__name__)

WATCH_JOB = "openclaw_watch"
STOP_ACTION = "openclaw.watch.stop"
MAX_WATCH_S = 600.0
_CMD = "/openclaw-token"


async def _fallback_hash(ctx: HandlerContext) -> str | None:
    info = await ctx.store.credential_info(ctx.owner, PROXY)
    return info.meta.get("hash") if info else None


async def seen_refusal(store: Store, owner: Owner, key_hash: str) -> SeenRefusal | None:
    """A spend-limit refusal the fallback received for this key (kept with the fallback key)."""
    info = await store.credential_info(owner, PROXY)
    return refusal_from_meta(info.meta, key_hash) if info else None


async def forget_refusal(ctx: HandlerContext, key_hash: str) -> None:
    """The key's limit changed: a refusal seen before says nothing about it any more."""
    info = await ctx.store.credential_info(ctx.owner, PROXY)
    value = await ctx.store.get_credential(ctx.owner, PROXY)
    if info and value and refusal_from_meta(info.meta, key_hash) is not None:
        await ctx.store.put_credential(ctx.owner, PROXY, value, meta=without_refusal(info.meta))


async def missing_key_failure(
    svc: OpenClawTokenService, mgmt: str, key_hash: str, error: BackendError
) -> Failure:
    """The failure for a key call; a 404 for a key listed among the revoked ones says so.

    The server answers KEY_NOT_FOUND both for a wrong hash and for a revoked key; a key that
    appears only in the list with revoked keys included is the second case.
    """
    plain = render_openclaw_failure(error, key_hash)
    if error.code != "KEY_NOT_FOUND":
        return plain
    try:
        everything = await svc.list_keys(mgmt, include_revoked=True)
    except BackendError:
        return plain
    match = next((k for k in everything.items if k.hash == key_hash), None)
    if match is None:
        return plain.model_copy(
            update={
                "message": f"OpenClaw Token: your account has no key {key_hash} (Key not found)."
            }
        )
    return Failure(
        code=error.code,
        message=f"OpenClaw Token: key {match.name} ({key_hash}) has been revoked; the server "
        "answers “Key not found” for a revoked key, which can no longer be viewed or changed.",
        request_id=error.request_id,
        hint=f"Create a new key with `{_CMD} keys create --name …`.",
    )


@asynccontextmanager
async def key_failures_shown(ctx: HandlerContext, mgmt: str, key_hash: str) -> AsyncIterator[None]:
    """Like `failures_shown`, with a 404 after a revoke worded as such."""
    try:
        yield
    except BackendError as exc:
        ctx.request_id = exc.request_id
        await private(ctx, [await missing_key_failure(service(ctx), mgmt, key_hash, exc)])
        raise HandledFailure(exc) from None


def _shown_once(value: str) -> list[Part]:
    return [
        Notice(level="warning", text="Copy the key now: it is shown only this once, only to you."),
        Text(markdown=f"```\n{value}\n```"),
    ]


async def create(cmd: KeysCreate, ctx: HandlerContext) -> None:
    """Provision a key; its value goes to the caller alone, once."""
    key = await management_key(ctx)
    new = NewKey(
        name=cmd.name,
        credit_limit=cmd.credit_limit,
        limit_reset=cmd.limit_reset,
        expires_at=cmd.expires_at,
    )
    async with failures_shown(ctx):
        created = await service(ctx).create_key(key, new)
    ctx.request_id = created.request_id
    if cmd.as_json:
        await private(ctx, [json_block(created, keep_key=True)])
        return
    await private(
        ctx,
        [
            *_shown_once(created.key or ""),
            key_fields(created, title=f"Created key {created.name}"),
            Text(
                markdown=f"To use it as your AllToken fallback: `{_CMD} integrate {created.hash}` "
                "(you paste it into a private form)."
            ),
        ],
    )


async def list_(cmd: KeysList, ctx: HandlerContext) -> None:
    """The caller's keys, filtered and sorted here.

    With revoked keys included the server flags none of them, so the active list is fetched
    too: a key missing from it is a revoked one.
    """
    key = await management_key(ctx)
    svc = service(ctx)
    revoked: set[str] = set()
    async with failures_shown(ctx):
        found = await svc.list_keys(key, include_revoked=cmd.include_revoked)
        if cmd.include_revoked:
            active = {k.hash for k in (await svc.list_keys(key)).items}
            revoked = {k.hash for k in found.items if k.hash not in active}
    keys = sort_keys(apply_filter(found.items, cmd.filter, revoked), cmd.sort)
    data = {"items": [k.model_dump(mode="json") for k in keys], "total": len(keys)}
    ctx.request_id = found.request_id
    await show(ctx, cmd.as_json, data, keys_table(keys, revoked))


async def info(cmd: KeysInfo, ctx: HandlerContext) -> None:
    """One key's settings and (the server's) usage figures."""
    key = await management_key(ctx)
    async with key_failures_shown(ctx, key, cmd.hash):
        detail = await service(ctx).key_info(key, cmd.hash)
    refusal = await seen_refusal(ctx.store, ctx.owner, cmd.hash)
    await show(ctx, cmd.as_json, detail, detail_parts(detail, refusal))


async def update(cmd: KeysUpdate, ctx: HandlerContext) -> None:
    """Change limit, reset period or disabled flag."""
    key = await management_key(ctx)
    async with key_failures_shown(ctx, key, cmd.hash):
        updated = await service(ctx).update_key(key, cmd.hash, cmd.patch())
    if cmd.set_limit or cmd.set_reset:
        await forget_refusal(ctx, cmd.hash)
    await show(
        ctx, cmd.as_json, updated, [key_fields(updated, title=f"Updated key {updated.name}")]
    )


async def _ask(
    ctx: HandlerContext,
    confirmations: Confirmations,
    action: str,
    text: str,
    label: str,
    **payload: str,
) -> None:
    token = await confirmations.offer(ctx.owner, action, payload)
    await private(
        ctx, [Notice(level="warning", text=text), confirm_buttons(token, label, danger=True)]
    )


async def rotate(cmd: KeysRotate, ctx: HandlerContext, confirmations: Confirmations) -> None:
    """Rotate now (--yes) or after Confirm."""
    await management_key(ctx)
    if cmd.yes:
        await do_rotate(ctx, {"hash": cmd.hash})
        return
    await _ask(
        ctx,
        confirmations,
        "keys.rotate",
        f"Rotate key {cmd.hash}? Its current value stops working immediately; "
        "the limits and hash stay.",
        "Rotate the key",
        hash=cmd.hash,
    )


async def do_rotate(ctx: HandlerContext, payload: dict[str, str]) -> None:
    """The confirmed rotation; an integrated fallback key is swapped for its new value."""
    key = await management_key(ctx)
    key_hash = payload["hash"]
    async with failures_shown(ctx, key_hash):
        rotated = await service(ctx).rotate_key(key, key_hash)
    ctx.request_id = rotated.request_id
    parts: list[Part] = [*_shown_once(rotated.key or ""), key_fields(rotated, "Rotated key")]
    if rotated.key and await _fallback_hash(ctx) == key_hash:
        await ctx.store.put_credential(
            ctx.owner, PROXY, rotated.key, meta={"hash": key_hash, "name": rotated.name}
        )
        parts.append(Notice(level="info", text="Your AllToken fallback now uses the new value."))
    await private(ctx, parts)


async def revoke(cmd: KeysRevoke, ctx: HandlerContext, confirmations: Confirmations) -> None:
    """Revoke now (--yes) or after Confirm."""
    await management_key(ctx)
    if cmd.yes:
        await do_revoke(ctx, {"hash": cmd.hash})
        return
    await _ask(
        ctx,
        confirmations,
        "keys.revoke",
        f"Revoke key {cmd.hash} for good? Anything using it stops working.",
        "Revoke the key",
        hash=cmd.hash,
    )


async def _forget_fallback_if(ctx: HandlerContext, hashes: set[str]) -> Notice | None:
    if await _fallback_hash(ctx) in hashes:
        await ctx.store.delete_credential(ctx.owner, PROXY)
        return Notice(
            level="warning",
            text=f"That key was your AllToken fallback; the fallback is now off "
            f"(`{_CMD} integrate` sets a new one).",
        )
    return None


async def do_revoke(ctx: HandlerContext, payload: dict[str, str]) -> None:
    """The confirmed revocation."""
    key = await management_key(ctx)
    key_hash = payload["hash"]
    async with failures_shown(ctx, key_hash):
        revoked = await service(ctx).revoke_key(key, key_hash)
    ctx.request_id = revoked.request_id
    parts: list[Part] = [
        Notice(level="success", text=f"Revoked key {revoked.name} ({revoked.hash}).")
    ]
    note = await _forget_fallback_if(ctx, {key_hash})
    await private(ctx, [*parts, *([note] if note else [])])


async def revoke_all(cmd: KeysRevokeAll, ctx: HandlerContext, confirmations: Confirmations) -> None:
    """Revoke every active key now (--yes) or after Confirm."""
    await management_key(ctx)
    if cmd.yes:
        await do_revoke_all(ctx, {})
        return
    await _ask(
        ctx,
        confirmations,
        "keys.revoke_all",
        "Revoke ALL your active provisioned keys? Everything using them stops working.",
        "Revoke all keys",
    )


async def do_revoke_all(ctx: HandlerContext, payload: dict[str, str]) -> None:
    """Revoke each active key (the server has no bulk call), then summarise."""
    key = await management_key(ctx)
    svc = service(ctx)
    async with failures_shown(ctx):
        found = await svc.list_keys(key)
    rows: list[tuple[str, str]] = []
    done: set[str] = set()
    for item in found.items:
        try:
            await svc.revoke_key(key, item.hash)
        except BackendError as exc:
            rows.append((item.name, f"{item.hash} · not revoked: {exc.code}"))
            continue
        done.add(item.hash)
        rows.append((item.name, f"{item.hash} · revoked"))
    if not rows:
        await private(ctx, [Notice(level="info", text="You have no active keys.")])
        return
    note = await _forget_fallback_if(ctx, done)
    await private(
        ctx,
        [Fields(title=f"Revoked {len(done)} of {len(rows)} key(s)", rows=rows)]
        + ([note] if note else []),
    )


# --- usage and --watch ---------------------------------------------------------------------


async def usage(cmd: KeysUsage, ctx: HandlerContext) -> None:
    """A snapshot, or (--watch) a supervised job editing one message."""
    key = await management_key(ctx)
    if cmd.watch:
        async with key_failures_shown(ctx, key, cmd.hash):
            await service(ctx).key_info(key, cmd.hash)  # fail fast on a wrong hash
        await ctx.jobs.start(
            WATCH_JOB,
            ctx.owner,
            ctx.conversation.destination,
            {"hash": cmd.hash, "interval": cmd.interval},
        )
        return
    async with key_failures_shown(ctx, key, cmd.hash):
        detail = await service(ctx).key_info(key, cmd.hash)
    refusal = await seen_refusal(ctx.store, ctx.owner, cmd.hash)
    await show(ctx, cmd.as_json, detail, [usage_fields(detail, datetime.now(UTC), refusal)])


def _stop_button(job_id: str) -> Actions:
    return Actions(buttons=[Button(action_id=STOP_ACTION, label="Stop", value=job_id)])


async def _post_or_edit(ctx: JobContext[UsageWatchState], parts: list[Part]) -> None:
    await ctx.show(parts)


class UsageWatchJob:
    """One message with a key's usage, edited every `interval` s until the time limit."""

    kind = WATCH_JOB
    command = "openclaw.keys.usage"
    state_model = UsageWatchState
    # Only how many transient errors in a row are ridden out: the wait after one stays the
    # watch interval the person chose, so the live message keeps its promised pace.
    backoff = PollBackoff()

    def __init__(self, svc: OpenClawTokenService, max_duration_s: float = MAX_WATCH_S) -> None:
        self.svc = svc
        self.max_duration_s = max_duration_s

    async def report_failure(self, ctx: JobContext, failure: Failure) -> None:
        """The failure replaces the live message."""
        await _post_or_edit(ctx, [failure])

    async def run(self, ctx: JobContext) -> None:
        """Poll, edit, sleep; the deadline counts from the job's creation (also after a restart)."""
        key = await ctx.store.get_credential(ctx.owner, MGMT)
        if not key:
            raise JobFailed(
                Failure(code="missing_key", message="You signed out of OpenClaw Token.")
            )
        key_hash = ctx.state.hash
        interval = ctx.state.interval or 5
        deadline = ctx.job.created_at + timedelta(seconds=self.max_duration_s)
        detail: KeyDetail | None = None
        errors = 0
        while (now := datetime.now(UTC)) < deadline:
            await ctx.poll_slot()
            try:
                detail = await self.svc.key_info(key, key_hash)
                errors = 0
            except BackendError as exc:
                errors += 1
                if self.backoff.wait_after(exc, errors) is None:
                    failure = await missing_key_failure(self.svc, key, key_hash, exc)
                    raise JobFailed(failure) from None
            refusal = await seen_refusal(ctx.store, ctx.owner, key_hash)
            if detail is not None:
                live = Notice(
                    level="progress",
                    text=f"Live: updated {now:%H:%M:%S} UTC, every {interval:g} s until "
                    f"{deadline:%H:%M} UTC.",
                )
                await _post_or_edit(
                    ctx, [usage_fields(detail, now, refusal), live, _stop_button(ctx.job.id)]
                )
            left = (deadline - datetime.now(UTC)).total_seconds()
            await asyncio.sleep(max(min(interval, left), 0))
        refusal = await seen_refusal(ctx.store, ctx.owner, key_hash)
        final: list[Part] = [usage_fields(detail, datetime.now(UTC), refusal)] if detail else []
        minutes = f"{self.max_duration_s / 60:g}"
        final.append(
            Notice(
                level="info",
                text=f"Stopped watching after {minutes} min; run the command again to go on.",
            )
        )
        await _post_or_edit(ctx, final)
        await ctx.set_status("done")


async def stop_watch(ctx: HandlerContext, job_id: str) -> None:
    """The Stop button: only the watcher may stop it."""
    inbound, conversation = ctx.inbound, ctx.conversation
    actor = Owner.of(inbound)
    job = await ctx.store.get_job(job_id)
    if job is None or job.kind != WATCH_JOB or job.owner != actor:
        await conversation.whisper(
            [Notice(level="warning", text="Only the person who started this can stop it.")]
        )
        return
    if not await ctx.store.transition_job(job_id, {"pending", "running"}, "cancelled"):
        await conversation.whisper([Notice(level="info", text="It has already stopped.")])
        return
    await ctx.jobs.cancel_local(job_id)
    ref = job.state.get("progress_ref")
    parts: list[Part] = [Notice(level="info", text=f"Stopped watching key {job.state['hash']}.")]
    try:
        if ref:
            await conversation.edit(MessageRef.model_validate(ref), parts)
        else:
            await conversation.whisper(parts)
    except Exception:
        log.exception("could not update the stopped usage watch")
