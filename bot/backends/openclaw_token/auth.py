"""`/openclaw-token auth …`: GitHub device-flow sign-in (a durable job), private forms for
email and password, whoami, rotate (confirmed), logout. Passwords never pass through chat.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time

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
from bot.backends.openclaw_token.job_state import DeviceLoginState
from bot.backends.openclaw_token.render import account_fields, render_openclaw_failure
from bot.backends.openclaw_token.service import DeviceToken, OpenClawTokenService, UserInfo
from bot.backends.openclaw_token.spec import (
    AuthLogin,
    AuthLogout,
    AuthRegister,
    AuthRotate,
    AuthWhoami,
    PasswordInChat,
)
from bot.core.context import HandlerContext
from bot.core.errors import BackendError
from bot.core.http import PollBackoff
from bot.core.job_errors import JobExpired, JobFailed
from bot.core.jobs import JobContext
from bot.core.key_shapes import fingerprint
from bot.core.messages import Failure, FormField, FormRequest, Link, Notice
from bot.core.secret_refusal import typed_in_public

log = logging.getLogger(__name__)

LOGIN_JOB = "openclaw_login"
LOGIN_FORM = "openclaw.login"
REGISTER_FORM = "openclaw.register"
CLIENT_ID_SETTING = "TOKENBOT_OPENCLAW_GITHUB_CLIENT_ID"
# What the registration form promises; the server itself only wants both fields non-empty.
MIN_PASSWORD, MAX_PASSWORD = 8, 128
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
SLOW_DOWN_STEP_S = 5.0  # RFC 8628: add 5 s per slow_down unless the server names an interval
# Stop on our own this long after the code should have expired, should the server never say so.
EXPIRY_GRACE_S = 30.0
_CMD = "/openclaw-token"


# --- sign-in -------------------------------------------------------------------------------


async def login(cmd: AuthLogin, ctx: HandlerContext) -> None:
    """GitHub device flow as a durable job, or (--email) a private email/password form."""
    if cmd.email:
        await ctx.conversation.request_form(
            FormRequest(
                form_id=LOGIN_FORM,
                title="OpenClaw Token sign-in",
                submit_label="Sign in",
                intro="Your password goes only to OpenClaw Token; tokenbot keeps just the "
                "management key it returns, encrypted. Signing in replaces your current "
                "management key (also in the openclaw-token CLI).",
                fields=[
                    FormField(
                        name="email", label="Email", secret=False, placeholder=cmd.email_hint
                    ),
                    FormField(name="password", label="Password", secret=True),
                ],
            )
        )
        return
    await ctx.jobs.start(LOGIN_JOB, ctx.owner, ctx.conversation.destination, {})
    await private(
        ctx,
        [Notice(level="progress", text="Starting GitHub sign-in; your code follows privately.")],
    )


async def register(cmd: AuthRegister, ctx: HandlerContext) -> None:
    """A private form: email, password, and the password again."""
    await ctx.conversation.request_form(
        FormRequest(
            form_id=REGISTER_FORM,
            title="OpenClaw Token account",
            submit_label="Create account",
            intro="Your password goes only to OpenClaw Token (at least 8 characters); tokenbot "
            "keeps just the management key it returns, encrypted.",
            fields=[
                FormField(name="email", label="Email", secret=False),
                FormField(name="password", label="Password", secret=True),
                FormField(name="confirm", label="Password again", secret=True),
            ],
        )
    )


async def _signed_in(ctx: HandlerContext, key: str, email: str, via: str) -> None:
    await ctx.store.put_credential(ctx.owner, MGMT, key, meta={"email": email, "via": via})
    await private(
        ctx,
        [
            Notice(
                level="success",
                text=f"Signed in to OpenClaw Token as {email}. Your management key "
                f"{fingerprint(key)} is stored encrypted for you.",
            )
        ],
    )


def _form_values(values: dict[str, str]) -> tuple[str, str]:
    return values.get("email", "").strip(), values.get("password", "")


def registration_problem(email: str, password: str, confirm: str) -> str | None:
    """Why a registration must not be sent, or None.

    The real server creates an account for any non-empty email and password ("x", "abc"), so
    tokenbot keeps the form's promise itself before anything is sent.
    """
    if not email or not password:
        return "Email and password are both needed."
    if len(email) > 254 or not _EMAIL.fullmatch(email):
        return f"“{email[:80]}” is not an email address (name@example.com); nothing was sent."
    if len(password) < MIN_PASSWORD:
        return f"The password needs at least {MIN_PASSWORD} characters; nothing was sent."
    if len(password) > MAX_PASSWORD:
        return f"The password may have at most {MAX_PASSWORD} characters; nothing was sent."
    if password != confirm:
        return "The passwords differ; nothing was sent."
    return None


async def login_form(ctx: HandlerContext, values: dict[str, str]) -> bool:
    """The submitted sign-in form."""
    email, password = _form_values(values)
    if not email or not password:
        await private(ctx, [Notice(level="warning", text="Email and password are both needed.")])
        return False
    try:
        result = await service(ctx).login(email, password)
    except BackendError as exc:
        await private(ctx, [render_openclaw_failure(exc)])
        return False
    await _signed_in(ctx, result.management_key, result.email, "email")
    return True


async def register_form(ctx: HandlerContext, values: dict[str, str]) -> bool:
    """The submitted registration form."""
    email, password = _form_values(values)
    problem = registration_problem(email, password, values.get("confirm", ""))
    if problem:
        await private(ctx, [Notice(level="warning", text=problem)])
        return False
    try:
        result = await service(ctx).register(email, password)
    except BackendError as exc:
        await private(ctx, [render_openclaw_failure(exc)])
        return False
    await _signed_in(ctx, result.management_key, result.email, "email")
    return True


async def password_in_chat(cmd: PasswordInChat, ctx: HandlerContext) -> None:
    """Refuse, delete the message where others could read it, and say how to do it privately."""
    deleted = False
    if typed_in_public(ctx.inbound):
        try:
            deleted = await ctx.conversation.delete_inbound()
        except Exception:
            log.exception("could not delete a message that may contain a password")
    where = " tokenbot deleted your message." if deleted else ""
    await private(
        ctx,
        [
            Failure(
                code="password_in_chat",
                message="tokenbot never reads passwords from chat messages; it did not use "
                f"or store it.{where}",
                hint=f"Use `{_CMD} auth login --email` or `{_CMD} auth register`: they open a "
                "private form. If you typed a real password where others can read it, change it.",
            )
        ],
    )


class DeviceLoginJob:
    """GitHub device flow: code → poll at `interval` (longer after slow_down) → key stored.

    The row exists before the code is requested; the device code and current interval are saved
    so a restart keeps polling the same sign-in. The access token is used at once and never saved.
    """

    kind = LOGIN_JOB
    command = "openclaw.auth.login"
    state_model = DeviceLoginState
    # Only how many transient errors in a row are ridden out: the wait after one stays the
    # device-flow interval, which RFC 8628 says not to undercut and a backoff would stretch.
    backoff = PollBackoff()

    def __init__(self, svc: OpenClawTokenService, client_id: str = "openclaw-cli") -> None:
        self.svc = svc
        self.client_id = client_id.strip()

    async def report_failure(self, ctx: JobContext, failure: Failure) -> None:
        """Failures of a sign-in are private."""
        await ctx.conversation.whisper([failure])

    async def run(self, ctx: JobContext) -> None:
        """Drive one sign-in to the stored management key."""
        if not ctx.state.device_code:
            if not self.client_id:
                raise JobFailed(client_id_failure(None, self.client_id))
            try:
                code = await self.svc.device_code(self.client_id)
            except BackendError as exc:
                if client_id_refused(exc):
                    raise JobFailed(client_id_failure(exc, self.client_id)) from None
                raise JobFailed(render_openclaw_failure(exc)) from None
            await ctx.save(
                device_code=code.device_code,
                user_code=code.user_code,
                verification_uri=code.verification_uri,
                interval=code.interval,
                expires_at=time.time() + code.expires_in,
            )
            await ctx.conversation.whisper(
                [
                    Notice(
                        level="info",
                        text=f"To sign in to OpenClaw Token with GitHub, open the page below and "
                        f"enter the code **{code.user_code}**. tokenbot waits for you (the code "
                        f"expires in {int(code.expires_in // 60) or 1} min).",
                    ),
                    Link(url=code.verification_uri, label="Enter the code on GitHub"),
                ]
            )
        grant = await self._poll(ctx)
        try:
            info = await self.svc.userinfo(grant.access_token or "")
        except BackendError as exc:
            raise JobFailed(userinfo_failure(exc)) from None
        # Stopped between the stored key and "done", the resumed job would poll a used code.
        await ctx.uninterrupted(self._store_and_tell(ctx, info))

    @staticmethod
    async def _store_and_tell(ctx: JobContext, info: UserInfo) -> None:
        await ctx.store.put_credential(
            ctx.owner, MGMT, info.management_key, meta={"email": info.email, "via": "github"}
        )
        merged = " (linked to your existing account)" if info.merged else ""
        await ctx.conversation.whisper(
            [
                Notice(
                    level="success",
                    text=f"Signed in to OpenClaw Token as {info.email} via GitHub{merged}. "
                    f"Your management key {fingerprint(info.management_key)} is stored "
                    "encrypted for you.",
                )
            ]
        )
        await ctx.set_status("done")

    async def _poll(self, ctx: JobContext) -> DeviceToken:
        device_code = str(ctx.state.device_code)
        interval = float(ctx.state.interval or 5.0)
        expires_at = float(ctx.state.expires_at or time.time() + 900)
        errors = 0
        while True:
            if time.time() > expires_at + EXPIRY_GRACE_S:
                raise JobExpired(_expired())
            await asyncio.sleep(interval)
            await ctx.poll_slot()
            try:
                result = await self.svc.device_token(device_code)
            except BackendError as exc:
                errors += 1
                if self.backoff.wait_after(exc, errors) is not None:
                    continue
                raise JobFailed(render_openclaw_failure(exc)) from None
            errors = 0
            if result.status == "success":
                return result
            if result.status == "authorization_pending":
                continue
            if result.status == "slow_down":
                interval = result.interval or interval + SLOW_DOWN_STEP_S
                await ctx.save(interval=interval)
                continue
            if result.status == "expired_token":
                raise JobExpired(_expired())
            if result.status == "access_denied":
                raise JobFailed(
                    Failure(
                        code="access_denied",
                        message="The GitHub sign-in was declined.",
                        hint=f"Run `{_CMD} auth login` again if that was a mistake.",
                    )
                )
            raise JobFailed(
                Failure(
                    code=result.status,
                    message="OpenClaw Token no longer knows this sign-in code.",
                    request_id=result.request_id,
                    hint=f"Run `{_CMD} auth login` again.",
                )
            )


def client_id_refused(error: BackendError) -> bool:
    """The server's answer to a client id other than its configured GitHub client id."""
    return error.code == "INVALID_INPUT" and "client_id" in error.message.lower()


def client_id_failure(error: BackendError | None, client_id: str) -> Failure:
    """GitHub sign-in is not set up between tokenbot and this server: say who can fix it."""
    sent = f"`{client_id}`" if client_id else "none (the setting is empty)"
    return Failure(
        code="github_client_id",
        message="GitHub sign-in is not set up for this OpenClaw Token server: it accepts only "
        "the client id of its own GitHub OAuth app (its GITHUB_CLIENT_ID), and tokenbot sent "
        f"{sent}. Nothing is wrong with your account.",
        request_id=error.request_id if error else None,
        hint=f"Whoever runs tokenbot sets {CLIENT_ID_SETTING} to the server's GitHub client id. "
        f"Meanwhile sign in with `{_CMD} auth login --email` (or `{_CMD} auth register`).",
    )


def userinfo_failure(error: BackendError) -> Failure:
    """GitHub approved, but the server would not name the account: its failure, not yours."""
    said = f"{error.code}: {error.message}"
    return Failure(
        code=f"userinfo_{error.code}",
        message="GitHub approved your sign-in, but the OpenClaw Token server then refused to "
        f"say which account it belongs to (its /oauth/userinfo answered {said}). This is the "
        "server's failure, not yours: you entered the code correctly.",
        request_id=error.request_id,
        hint=f"Sign in with `{_CMD} auth login --email` instead, or tell whoever runs the "
        "OpenClaw Token server that GitHub sign-in fails after approval.",
    )


def _expired() -> Failure:
    return Failure(
        code="expired_token",
        message="The GitHub sign-in code expired before it was entered.",
        hint=f"Run `{_CMD} auth login` again for a new code.",
    )


# --- account -------------------------------------------------------------------------------


async def whoami(cmd: AuthWhoami, ctx: HandlerContext) -> None:
    """The signed-in account."""
    key = await management_key(ctx)
    async with failures_shown(ctx):
        account = await service(ctx).me(key)
    info = await ctx.store.credential_info(ctx.owner, MGMT)
    table = account_fields(account)
    if info is not None:
        via = info.meta.get("via", "")
        table.rows.append(
            ("management key", f"{info.fingerprint} (stored{', via ' + via if via else ''})")
        )
    await show(ctx, cmd.as_json, account, [table])


async def rotate(cmd: AuthRotate, ctx: HandlerContext, confirmations: Confirmations) -> None:
    """Rotate now (--yes) or after the Confirm button."""
    await management_key(ctx)
    if cmd.yes:
        await do_rotate(ctx, {})
        return
    token = await confirmations.offer(ctx.owner, "auth.rotate")
    await private(
        ctx,
        [
            Notice(
                level="warning",
                text="Rotate your OpenClaw Token management key? The current key stops working "
                "immediately, everywhere (including the openclaw-token CLI); tokenbot stores the "
                "new one for you.",
            ),
            confirm_buttons(token, "Rotate the key", danger=True),
        ],
    )


async def do_rotate(ctx: HandlerContext, payload: dict[str, str]) -> None:
    """The confirmed rotation."""
    key = await management_key(ctx)
    async with failures_shown(ctx):
        result = await service(ctx).rotate(key)
    ctx.request_id = result.request_id
    info = await ctx.store.credential_info(ctx.owner, MGMT)
    meta = dict(info.meta) if info else {}
    await ctx.store.put_credential(ctx.owner, MGMT, result.management_key, meta=meta)
    await private(
        ctx,
        [
            Notice(
                level="success",
                text=f"Rotated. The old management key no longer works; the new one "
                f"{fingerprint(result.management_key)} is stored encrypted for you.",
            )
        ],
    )


async def logout(cmd: AuthLogout, ctx: HandlerContext) -> None:
    """Forget the management key (the fallback key, if any, stays until `integrate --remove`)."""
    removed = await ctx.store.delete_credential(ctx.owner, MGMT)
    text = (
        "Signed out: tokenbot no longer holds your OpenClaw Token management key."
        if removed
        else "You were not signed in to OpenClaw Token."
    )
    if await ctx.store.credential_info(ctx.owner, PROXY) is not None:
        text += (
            f" Your AllToken fallback key stays set; remove it with `{_CMD} integrate --remove`."
        )
    await private(ctx, [Notice(level="success" if removed else "info", text=text)])
