"""The OpenClaw Token client against its simulator over real HTTP: the contract, every error
code, idempotent purchases, spend limits with their reset periods, retries and the device flow.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from bot.backends.openclaw_token.service import (
    CLI_RETRY,
    AutoTopup,
    NewKey,
    OpenClawTokenService,
)
from bot.core.errors import BackendError
from bot.core.http import RetryPolicy
from bot.core.openai_chat import ChatMessage
from bot.sim.openclaw_token.server import DEMO_EMAIL, DEMO_MGMT_KEY, OpenClawTokenSim, SimClock
from tests.integration.openclaw_support import FAST, running_sim

WEDNESDAY_NOON = datetime(2026, 5, 13, 12, 0, tzinfo=UTC).timestamp()
LONG = "explain [[tokens=1000]]"  # ~1000 completion tokens: $0.010005 on gpt-4o


@pytest.fixture
def clock() -> SimClock:
    return SimClock(WEDNESDAY_NOON)


@pytest.fixture
async def oc(clock: SimClock) -> AsyncIterator[OpenClawTokenSim]:
    async with running_sim(FAST, clock=clock) as sim:
        yield sim


@pytest.fixture
async def svc(oc: OpenClawTokenSim) -> AsyncIterator[OpenClawTokenService]:
    async with httpx.AsyncClient() as http:
        yield OpenClawTokenService(http, oc.base_url, retry=replace(CLI_RETRY, backoff_s=0.01))


async def code_of(call: object) -> str:
    with pytest.raises(BackendError) as info:
        await call  # type: ignore[misc]
    assert info.value.backend == "openclaw_token" and info.value.request_id
    return info.value.code


async def ask(
    svc: OpenClawTokenService, key: str, prompt: str = "hi", model: str = "gpt-4o"
) -> str:
    stream = svc.proxy_chat(key, model, [ChatMessage(role="user", content=prompt)])
    return "".join([d async for d in stream])


# --- account ---------------------------------------------------------------------------------


async def test_register_login_me_rotate(svc: OpenClawTokenService) -> None:
    made = await svc.register("ada@example.com", "correct horse")
    assert made.management_key.startswith("sk-mgmt-") and made.email == "ada@example.com"
    me = await svc.me(made.management_key)
    assert (me.email, me.plan, me.credits_remaining, me.keys_count) == (
        "ada@example.com",
        "free",
        0,
        0,
    )
    logged = await svc.login("ada@example.com", "correct horse")
    assert logged.management_key != made.management_key  # every login rotates
    assert await code_of(svc.me(made.management_key)) == "UNAUTHORIZED"
    rotated = await svc.rotate(logged.management_key)
    assert rotated.rotated_at and await code_of(svc.me(logged.management_key)) == "UNAUTHORIZED"
    assert (await svc.me(rotated.management_key)).email == "ada@example.com"


async def test_account_errors(svc: OpenClawTokenService) -> None:
    # Like the real server, only empty fields are refused: tokenbot checks the rest itself.
    assert await code_of(svc.register("", "long enough")) == "INVALID_INPUT"
    assert await code_of(svc.register("bo@example.com", "")) == "INVALID_INPUT"
    assert (await svc.register("not-an-email", "abc")).email == "not-an-email"
    assert await code_of(svc.register(DEMO_EMAIL, "whatever123")) == "EMAIL_EXISTS"
    assert await code_of(svc.login(DEMO_EMAIL, "wrong")) == "INVALID_CREDENTIALS"
    assert await code_of(svc.me("sk-mgmt-00000000-0000-0000-0000-000000000001")) == "UNAUTHORIZED"


async def test_demo_account_is_seeded(svc: OpenClawTokenService) -> None:
    me = await svc.me(DEMO_MGMT_KEY)
    assert (me.email, me.plan, me.credits_remaining) == (DEMO_EMAIL, "free", 100)
    topup = await svc.auto_topup(DEMO_MGMT_KEY)
    assert (topup.enabled, topup.threshold, topup.amount) == (False, 5, 25)
    assert (await svc.login(DEMO_EMAIL, "Demo1234!")).email == DEMO_EMAIL


# --- credits ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("amount", "fee"), [("5", "0.80"), ("14.54", "0.80"), ("100", "5.50")])
async def test_purchase_fee_arithmetic(svc: OpenClawTokenService, amount: str, fee: str) -> None:
    bought = await svc.purchase(DEMO_MGMT_KEY, Decimal(amount), str(uuid.uuid4()))
    assert bought.platform_fee == Decimal(fee)
    assert bought.total_charged == Decimal(amount) + Decimal(fee)
    assert bought.new_balance == 100 + Decimal(amount)


async def test_purchase_is_idempotent(svc: OpenClawTokenService, oc: OpenClawTokenSim) -> None:
    idem = str(uuid.uuid4())
    first, second = await asyncio.gather(
        svc.purchase(DEMO_MGMT_KEY, Decimal(25), idem),
        svc.purchase(DEMO_MGMT_KEY, Decimal(25), idem),
    )
    assert first.transaction_id == second.transaction_id
    assert (await svc.credits(DEMO_MGMT_KEY)).remaining == 125
    assert oc.stats["purchases"] == 1
    assert await code_of(svc.purchase(DEMO_MGMT_KEY, Decimal(30), idem)) == "CONFLICT"
    assert await code_of(svc.purchase(DEMO_MGMT_KEY, Decimal("4.99"), "x")) == "INVALID_INPUT"


async def test_purchase_is_retried_after_a_5xx_and_still_charged_once(
    svc: OpenClawTokenService, oc: OpenClawTokenSim
) -> None:
    oc.fail_next("POST", "/credits/purchase", 503, times=2)
    bought = await svc.purchase(DEMO_MGMT_KEY, Decimal(10), str(uuid.uuid4()))
    assert bought.new_balance == 110 and oc.stats["purchases"] == 1
    assert oc.stats["POST /credits/purchase"] == 3


async def test_non_idempotent_calls_are_not_retried(
    svc: OpenClawTokenService, oc: OpenClawTokenSim
) -> None:
    oc.fail_next("POST", "/keys", 503)
    assert await code_of(svc.create_key(DEMO_MGMT_KEY, NewKey(name="x"))) == "INTERNAL_ERROR"
    assert oc.stats["POST /keys"] == 1
    oc.fail_next("GET", "/credits", 502, "UPSTREAM_UNREACHABLE", times=3)
    assert (await svc.credits(DEMO_MGMT_KEY)).remaining == 100
    assert oc.stats["GET /credits"] == 4  # three failures, three backoffs, then success


async def test_fifteen_second_timeout_is_per_call() -> None:
    # A server that accepts and never answers; the client gives up after its own timeout.
    server = await asyncio.start_server(lambda r, w: asyncio.sleep(30), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            svc = OpenClawTokenService(
                http, f"http://127.0.0.1:{port}", timeout_s=0.2, retry=RetryPolicy(max_retries=0)
            )
            assert svc.timeout_s == 0.2
            with pytest.raises(BackendError) as info:
                await svc.credits(DEMO_MGMT_KEY)
            assert info.value.code == "timeout"
        assert OpenClawTokenService(http, "http://x").timeout_s == 15.0
    finally:
        server.close()


async def test_history_and_auto_topup(svc: OpenClawTokenService, oc: OpenClawTokenSim) -> None:
    for amount in (5, 6, 7):
        await svc.purchase(DEMO_MGMT_KEY, Decimal(amount), str(uuid.uuid4()))
    page = await svc.history(DEMO_MGMT_KEY, limit=2, offset=0, type_="purchase")
    assert [t.amount for t in page.items] == [7, 6] and page.total == 4 and page.has_more
    page = await svc.history(DEMO_MGMT_KEY, limit=2, offset=2, type_="purchase")
    assert [t.amount for t in page.items] == [5, 100] and not page.has_more
    assert await code_of(svc.history(DEMO_MGMT_KEY, limit=0)) == "INVALID_INPUT"
    assert await code_of(svc.history(DEMO_MGMT_KEY, type_="gift")) == "INVALID_INPUT"  # type: ignore[arg-type]
    saved = await svc.set_auto_topup(
        DEMO_MGMT_KEY, AutoTopup(enabled=True, threshold=Decimal(200), amount=Decimal(25))
    )
    assert saved.enabled and saved.threshold == 200
    bad = AutoTopup(enabled=True, threshold=Decimal(0), amount=Decimal(25))
    assert await code_of(svc.set_auto_topup(DEMO_MGMT_KEY, bad)) == "INVALID_INPUT"
    key = await svc.create_key(DEMO_MGMT_KEY, NewKey(name="topper"))
    await ask(svc, key.key or "")  # usage drops the balance below 200 -> one automatic top-up
    topups = await svc.history(DEMO_MGMT_KEY, type_="auto_topup")
    assert [t.amount for t in topups.items] == [25]


# --- keys ------------------------------------------------------------------------------------


async def test_key_lifecycle(svc: OpenClawTokenService) -> None:
    made = await svc.create_key(
        DEMO_MGMT_KEY,
        NewKey(
            name="agent",
            credit_limit=Decimal(10),
            limit_reset="monthly",
            expires_at="2026-12-31T23:59:59Z",
        ),
    )
    assert made.key and made.key.startswith("sk-prov-") and len(made.key) == 8 + 32
    assert made.hash == hashlib.sha256(made.key.encode()).hexdigest()[:16]
    assert (made.credit_limit, made.limit_reset) == (10, "monthly")
    assert await code_of(svc.create_key(DEMO_MGMT_KEY, NewKey(name="agent"))) == "KEY_NAME_EXISTS"
    listed = await svc.list_keys(DEMO_MGMT_KEY)
    assert listed.total == 1 and listed.items[0].key is None  # never the value again
    updated = await svc.update_key(
        DEMO_MGMT_KEY, made.hash, {"credit_limit": None, "disabled": True}
    )
    assert updated.credit_limit is None and updated.disabled
    rotated = await svc.rotate_key(DEMO_MGMT_KEY, made.hash)
    assert rotated.hash == made.hash and rotated.key != made.key
    assert await code_of(ask(svc, made.key)) == "UNAUTHORIZED"  # the old value is gone
    revoked = await svc.revoke_key(DEMO_MGMT_KEY, made.hash)
    assert revoked.revoked and revoked.revoked_at
    assert await code_of(svc.revoke_key(DEMO_MGMT_KEY, made.hash)) == "KEY_ALREADY_REVOKED"
    assert await code_of(svc.rotate_key(DEMO_MGMT_KEY, made.hash)) == "KEY_REVOKED"
    # As the real server: a revoked key is "not found" to GET and PATCH ...
    assert (
        await code_of(svc.update_key(DEMO_MGMT_KEY, made.hash, {"disabled": False}))
        == "KEY_NOT_FOUND"
    )
    assert await code_of(svc.key_info(DEMO_MGMT_KEY, made.hash)) == "KEY_NOT_FOUND"
    assert await code_of(svc.key_info(DEMO_MGMT_KEY, "f" * 16)) == "KEY_NOT_FOUND"
    assert (await svc.list_keys(DEMO_MGMT_KEY)).total == 0
    # ... and a list with revoked keys included does not flag them.
    [unflagged] = (await svc.list_keys(DEMO_MGMT_KEY, include_revoked=True)).items
    assert unflagged.hash == made.hash and not unflagged.revoked and unflagged.revoked_at is None
    # Like the real server, a past expiry is stored (the key is born expired).
    late = await svc.create_key(
        DEMO_MGMT_KEY, NewKey(name="late", expires_at="2020-01-01T00:00:00Z")
    )
    assert late.expires_at and late.expires_at.startswith("2020-01-01")


# --- the proxy -------------------------------------------------------------------------------


async def test_proxy_streams_like_alltoken_and_meters(svc: OpenClawTokenService) -> None:
    key = await svc.create_key(DEMO_MGMT_KEY, NewKey(name="meter"))
    stream = svc.proxy_chat(key.key or "", "gpt-4o-mini", [ChatMessage(role="user", content="hi")])
    text = "".join([d async for d in stream])
    result = stream.result
    assert "Simulated answer" in text and result.usage and result.usage.completion_tokens > 0
    assert result.cost and result.cost.cost > 0 and result.request_id
    detail = await svc.key_info(DEMO_MGMT_KEY, key.hash)
    # The cost comment is the upstream's (AllToken's prices), not OpenClaw Token's charge.
    assert detail.usage > 0 and detail.usage != result.cost.cost
    # The real server's breakdown: placeholders derived from lifetime usage.
    assert detail.usage_monthly == detail.usage and detail.requests_count == int(detail.usage * 100)
    assert [m.model for m in detail.model_usage] == ["claude-sonnet-4-5", "gpt-4o"]
    credits = await svc.credits(DEMO_MGMT_KEY)
    assert credits.total_usage == detail.usage
    history = await svc.history(DEMO_MGMT_KEY, type_="usage")
    assert history.items == []  # metered usage writes no credits history row
    search = await svc.proxy_search(key.key or "", "deepseek-v4-pro", "news")
    assert "Searched the web" in search.text


async def test_proxy_key_states_and_account_credits(
    svc: OpenClawTokenService, oc: OpenClawTokenSim, clock: SimClock
) -> None:
    key = await svc.create_key(DEMO_MGMT_KEY, NewKey(name="state"))
    value = key.key or ""
    await svc.update_key(DEMO_MGMT_KEY, key.hash, {"disabled": True})
    assert await code_of(ask(svc, value)) == "KEY_DISABLED"
    await svc.update_key(DEMO_MGMT_KEY, key.hash, {"disabled": False})
    await ask(svc, value)
    oc.account().total_usage = oc.account().total_credits  # spend everything
    assert await code_of(ask(svc, value)) == "INSUFFICIENT_CREDITS"
    short = await svc.create_key(
        DEMO_MGMT_KEY, NewKey(name="short", expires_at="2026-05-13T13:00:00Z")
    )
    clock.advance(3600)
    assert await code_of(ask(svc, short.key or "")) == "KEY_EXPIRED"
    await svc.revoke_key(DEMO_MGMT_KEY, key.hash)
    assert await code_of(ask(svc, value)) == "KEY_REVOKED"
    assert await code_of(ask(svc, "sk-prov-" + "0" * 32)) == "UNAUTHORIZED"


async def test_proxy_rejects_bad_bodies(oc: OpenClawTokenSim, svc: OpenClawTokenService) -> None:
    key = await svc.create_key(DEMO_MGMT_KEY, NewKey(name="body"))
    headers = {"Authorization": f"Bearer {key.key}"}
    async with httpx.AsyncClient() as http:
        url = f"{oc.base_url}/v1/chat/completions"
        r = await http.post(url, json={"model": "gpt-4o", "messages": []}, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_INPUT"
        big = {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 1_100_000}]}
        r = await http.post(url, json=big, headers=headers)
        assert r.status_code == 413 and r.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


@pytest.mark.parametrize(
    ("period", "still_limited_after_h", "reset_after_h"),
    [
        ("daily", 11, 13),  # Wed 12:00 -> 23:00 same day; -> Thu 01:00
        ("weekly", 24 * 4 + 11, 24 * 4 + 13),  # -> Sun 23:00; -> Mon 01:00
        ("monthly", 24 * 18 + 11, 24 * 18 + 13),  # -> May 31 23:00; -> Jun 1 01:00
    ],
)
async def test_spend_limit_resets_with_its_period(
    svc: OpenClawTokenService,
    clock: SimClock,
    period: str,
    still_limited_after_h: int,
    reset_after_h: int,
) -> None:
    key = await svc.create_key(
        DEMO_MGMT_KEY,
        NewKey(name=period, credit_limit=Decimal("0.01"), limit_reset=period),
    )
    value = key.key or ""
    await ask(svc, value, LONG)  # $0.010005: over the $0.01 limit after this request
    assert await code_of(ask(svc, value)) == "CREDIT_LIMIT_EXCEEDED"
    clock.advance(still_limited_after_h * 3600)
    assert await code_of(ask(svc, value)) == "CREDIT_LIMIT_EXCEEDED"
    clock.advance((reset_after_h - still_limited_after_h) * 3600)
    await ask(svc, value)  # a new period: allowed again (the real per-period usage is checked)
    detail = await svc.key_info(DEMO_MGMT_KEY, key.hash)
    # GET /keys/:hash's period figures are the real server's placeholders, not that usage.
    shares = {"daily": Decimal("0.15"), "weekly": Decimal("0.45"), "monthly": Decimal(1)}
    expected = (detail.usage * shares[period]).quantize(Decimal("0.01"))
    assert detail.period_usage() == (detail.usage if period == "monthly" else expected)


async def test_a_limit_without_reset_never_resets(
    svc: OpenClawTokenService, clock: SimClock
) -> None:
    key = await svc.create_key(DEMO_MGMT_KEY, NewKey(name="lifetime", credit_limit=Decimal("0.01")))
    await ask(svc, key.key or "", LONG)
    clock.advance(400 * 24 * 3600)
    assert await code_of(ask(svc, key.key or "")) == "CREDIT_LIMIT_EXCEEDED"
    await svc.update_key(DEMO_MGMT_KEY, key.hash, {"credit_limit": 1.0})  # raising it helps
    await ask(svc, key.key or "")


# --- device flow -----------------------------------------------------------------------------


async def test_device_flow_pending_slow_down_success(
    svc: OpenClawTokenService, oc: OpenClawTokenSim, clock: SimClock
) -> None:
    code = await svc.device_code("openclaw-cli")
    assert code.verification_uri.endswith("/login/device") and "-" in code.user_code
    assert (await svc.device_token(code.device_code)).status == "authorization_pending"
    fast = await svc.device_token(code.device_code)  # before the interval: slow down
    assert fast.status == "slow_down" and fast.interval and fast.interval > code.interval
    clock.advance(fast.interval)
    oc.approve_device(code.user_code)
    grant = await svc.device_token(code.device_code)
    assert grant.status == "success" and grant.access_token
    info = await svc.userinfo(grant.access_token)
    assert info.email == DEMO_EMAIL and info.merged and info.management_key == DEMO_MGMT_KEY
    again = await svc.device_token(code.device_code)
    assert again.status == "bad_device_code"  # a code is good for one sign-in


async def test_device_flow_expired_and_denied(
    svc: OpenClawTokenService, oc: OpenClawTokenSim
) -> None:
    code = await svc.device_code("openclaw-cli")
    oc.expire_device(code.user_code)
    assert (await svc.device_token(code.device_code)).status == "expired_token"
    other = await svc.device_code("openclaw-cli")
    oc.deny_device(other.user_code)
    assert (await svc.device_token(other.device_code)).status == "access_denied"
    assert await code_of(svc.userinfo("gho_nope")) == "UNAUTHORIZED"
