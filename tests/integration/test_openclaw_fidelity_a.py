"""tokenbot against an OpenClaw Token simulator that behaves like the real self-hosted server.

Issue items: the two base shapes (1), the GitHub client id (2), an upstream provider out of
balance (6), lax registration (7), the audit of Confirm prompts (9), `--json` as received
(10) and past `--expires` dates (11).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.backends.openclaw_token.confirm import CANCEL_ACTION, CONFIRM_ACTION, Confirmations
from bot.backends.openclaw_token.service import CLI_RETRY, NewKey, OpenClawTokenService
from bot.core.app import TokenBot
from bot.core.errors import BackendError
from bot.core.messages import Destination, Notice
from bot.core.openai_chat import ChatMessage
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_EMAIL, DEMO_MGMT_KEY, OpenClawTokenSim
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation
from tests.integration.openclaw_support import (
    FAST,
    click,
    failures,
    parts_of,
    running_sim,
    signed_in,
    texts,
)

OPERATOR_CLIENT_ID = "Iv1.0123456789abcdef"


@asynccontextmanager
async def bot_on(
    data_dir: Path, alltoken: AllTokenSim, api_base: str, **extra: Any
) -> AsyncIterator[TokenBot]:
    """A TokenBot whose OPENCLAW_TOKEN_API_BASE is `api_base` (plus any other settings)."""
    settings = make_settings(data_dir, alltoken, openclaw_token_api_base=api_base, **extra)
    bot = await TokenBot.create(settings)
    bot.services.get(OpenClawTokenService).retry = replace(CLI_RETRY, backoff_s=0.01)
    conversations: dict[str, RecordingConversation] = {}

    def factory(dest: Destination) -> RecordingConversation:
        return conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

    for platform in ("console", "slack", "discord"):
        bot.register_platform(platform, factory)
    bot.test_conversations = conversations  # type: ignore[attr-defined]
    try:
        yield bot
    finally:
        await bot.aclose()


@pytest.fixture
async def oc() -> AsyncIterator[OpenClawTokenSim]:
    async with running_sim() as s:
        yield s


@pytest.fixture
async def ocbot(tmp_path: Path, sim: AllTokenSim, oc: OpenClawTokenSim) -> AsyncIterator[TokenBot]:
    async with bot_on(tmp_path / "data", sim, oc.base_url) as b:
        yield b


def notices(chat: Chat) -> str:
    return "\n".join(n.text for n in parts_of(chat, Notice))


def json_blocks(chat: Chat) -> list[Any]:
    return [
        json.loads(t.removeprefix("```json\n").removesuffix("\n```"))
        for t in texts(chat)
        if t.startswith("```json")
    ]


async def ask(svc: OpenClawTokenService, key: str) -> str:
    stream = svc.proxy_chat(key, "gpt-4o", [ChatMessage(role="user", content="hi")])
    return "".join([d async for d in stream])


# --- 1. base URL shapes ------------------------------------------------------------------------


async def test_a_self_hosted_server_refuses_management_calls_under_v1(
    oc: OpenClawTokenSim,
) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{oc.base_url}/v1/auth/me")
        assert r.status_code == 401
        assert r.json()["error"]["message"] == "Missing or invalid authorization header"
        r = await http.get(
            f"{oc.base_url}/v1/auth/me", headers={"Authorization": f"Bearer {DEMO_MGMT_KEY}"}
        )
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        assert (await http.get(f"{oc.base_url}/")).json() == {"status": "ok"}


@pytest.mark.parametrize("suffix", ["", "/v1", "/v1/"])
async def test_both_ways_of_writing_a_self_hosted_base_work(
    oc: OpenClawTokenSim, suffix: str
) -> None:
    async with httpx.AsyncClient() as http:
        svc = OpenClawTokenService(http, oc.base_url + suffix)
        assert (await svc.me(DEMO_MGMT_KEY)).email == DEMO_EMAIL
        assert svc.bases.management == oc.base_url and svc.bases.shape == "self-hosted"
        key = await svc.create_key(DEMO_MGMT_KEY, NewKey(name=f"shape{suffix.strip('/')}"))
        assert "Simulated answer" in await ask(svc, key.key or "")
        assert svc.proxy_url == f"{oc.base_url}/v1/chat/completions"
    # A root base needs no probe; a /v1 base is probed once (the hosted shape's path, then
    # the root's), not on every call.
    probes = oc.stats["POST /oauth/device/token"] + oc.stats["POST /v1/{tail}"]
    assert probes == (0 if not suffix else 2)


async def test_the_hosted_shape_serves_management_under_v1() -> None:
    async with running_sim(FAST.model_copy(update={"mount": "hosted"})) as hosted:
        assert hosted.api_base.endswith("/v1")
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{hosted.base_url}/auth/me")).status_code == 404
            svc = OpenClawTokenService(http, hosted.api_base)
            assert (await svc.me(DEMO_MGMT_KEY)).email == DEMO_EMAIL
            assert svc.bases.management == hosted.api_base and svc.bases.shape == "hosted"
            key = await svc.create_key(DEMO_MGMT_KEY, NewKey(name="hosted"))
            assert "Simulated answer" in await ask(svc, key.key or "")


async def test_start_up_says_which_bases_are_used(
    tmp_path: Path, sim: AllTokenSim, oc: OpenClawTokenSim, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with bot_on(tmp_path / "a", sim, oc.base_url) as bot:
        assert "OpenClaw Token:" not in caplog.text  # built (e.g. by discord-sync), not serving
        await bot.start()
    assert (
        f"OpenClaw Token: management API {oc.base_url} (self-hosted), "
        f"proxy {oc.base_url}/v1/chat/completions" in caplog.text
    )
    caplog.clear()
    async with bot_on(tmp_path / "b", sim, f"{oc.base_url}/v1") as bot:
        await bot.start()
        assert "the first call finds out" in caplog.text
        alice = await signed_in(bot)
        await alice.send("/openclaw-token credits balance")
        assert not failures(alice)
    assert f"management API {oc.base_url} (self-hosted)" in caplog.text  # once detected


# --- 2. the GitHub client id -------------------------------------------------------------------


async def test_a_client_id_the_server_does_not_know_is_explained(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    config = FAST.model_copy(update={"github_client_id": OPERATOR_CLIENT_ID})
    async with running_sim(config) as strict, bot_on(tmp_path / "d", sim, strict.base_url) as bot:
        carol = Chat(bot, "carol")
        await carol.send("/openclaw-token auth login")
        assert await bot.jobs.wait_idle(5)
        [f] = failures(carol)
        assert f.code == "github_client_id" and "`openclaw-cli`" in f.message
        assert "not" in f.message and "your account" in f.message
        assert "TOKENBOT_OPENCLAW_GITHUB_CLIENT_ID" in (f.hint or "")
        assert "auth login --email" in (f.hint or "")
        assert strict.stats["error 400 INVALID_INPUT"] == 1


async def test_the_configured_client_id_signs_in(tmp_path: Path, sim: AllTokenSim) -> None:
    config = FAST.model_copy(update={"github_client_id": OPERATOR_CLIENT_ID})
    async with (
        running_sim(config) as strict,
        bot_on(
            tmp_path / "d", sim, strict.base_url, openclaw_github_client_id=OPERATOR_CLIENT_ID
        ) as bot,
    ):
        carol = Chat(bot, "carol")
        await carol.send("/openclaw-token auth login")
        await carol.conv.wait_for(lambda c: "enter the code" in c.text(), 5)
        strict.approve_device()
        assert await bot.jobs.wait_idle(5)
        assert not failures(carol)
        assert await bot.store.get_credential(carol.owner, "openclaw_token") == DEMO_MGMT_KEY


async def test_a_refused_userinfo_is_the_servers_failure(tmp_path: Path, sim: AllTokenSim) -> None:
    # The real /oauth/userinfo checks a management key, so the device flow's token fails.
    config = FAST.model_copy(update={"userinfo_needs_management_key": True})
    async with running_sim(config) as real, bot_on(tmp_path / "d", sim, real.base_url) as bot:
        carol = Chat(bot, "carol")
        await carol.send("/openclaw-token auth login")
        await carol.conv.wait_for(lambda c: "enter the code" in c.text(), 5)
        real.approve_device()
        assert await bot.jobs.wait_idle(5)
        [f] = failures(carol)
        assert f.code == "userinfo_UNAUTHORIZED" and "server's failure, not yours" in f.message
        assert "Sign in again" not in (f.hint or "") and "--email" in (f.hint or "")
        assert await bot.store.get_credential(carol.owner, "openclaw_token") is None


# --- 6. the operator's upstream out of balance ---------------------------------------------------


async def test_an_upstream_out_of_balance_says_whose_balance(oc: OpenClawTokenSim) -> None:
    async with httpx.AsyncClient() as http:
        svc = OpenClawTokenService(http, oc.base_url)
        key = await svc.create_key(DEMO_MGMT_KEY, NewKey(name="up"))
        oc.upstream_refuses(402, "insufficient_balance")
        with pytest.raises(BackendError) as info:
            await ask(svc, key.key or "")
        error = info.value
        assert error.code == "upstream_insufficient_balance" and error.status == 402
        assert "server operator's own account" in error.message
        assert "not about your OpenClaw Token credits" in error.message
        assert error.details["upstream_code"] == "insufficient_balance"
        # The server's own refusals keep their codes.
        await svc.update_key(DEMO_MGMT_KEY, key.hash, {"disabled": True})
        with pytest.raises(BackendError) as own:
            await ask(svc, key.key or "")
        assert own.value.code == "KEY_DISABLED"


async def test_the_fallback_names_the_operators_balance(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await signed_in(ocbot, "erin")
    await erin.give_key(sim.issue_key(0.0))
    await erin.send("/openclaw-token integrate")
    erin.conv.events.clear()
    oc.upstream_refuses(402, "insufficient_balance")
    await erin.send("/alltoken-chat claude-sonnet-4-6 explain tides")
    [f] = failures(erin)
    assert f.code == "upstream_insufficient_balance"
    assert "server operator" in f.message and "OpenClaw Token credits" in f.message
    assert "top up its provider account" in (f.hint or "")
    assert oc.account().remaining == 100  # the user's credits were fine and untouched


# --- 7. registration is checked before sending -------------------------------------------------


@pytest.mark.parametrize(
    ("email", "password", "said"),
    [
        ("not-an-email", "long enough", "not an email address"),
        ("bob@example.com", "abc", "at least 8 characters"),
        ("bob@localhost", "long enough", "not an email address"),
        # Distinctive, not "x" * 129: form passwords join the suite-end leak scan, and a run of
        # x's also appears in unrelated test text.
        ("bob@example.com", "".join(f"pw{i:03d}" for i in range(26))[:129], "at most 128"),
    ],
)
async def test_registration_is_checked_before_it_is_sent(
    ocbot: TokenBot, oc: OpenClawTokenSim, email: str, password: str, said: str
) -> None:
    bob = Chat(ocbot, "bob")
    await bob.send("/openclaw-token auth register")
    [form] = bob.conv.forms
    values = {"email": email, "password": password, "confirm": password}
    assert not await ocbot.submit_form(bob.inbound("x"), form.form_id, values, bob.conv)
    assert said in notices(bob) and "nothing was sent" in notices(bob)
    assert oc.stats["POST /auth/register"] == 0 and len(oc.accounts) == 1


async def test_the_lax_server_would_have_taken_it(oc: OpenClawTokenSim) -> None:
    async with httpx.AsyncClient() as http:
        svc = OpenClawTokenService(http, oc.base_url)
        assert (await svc.register("not-an-email", "abc")).management_key.startswith("sk-mgmt-")
    strict = FAST.model_copy(update={"strict_registration": True})
    async with running_sim(strict) as s, httpx.AsyncClient() as http:
        with pytest.raises(BackendError) as info:
            await OpenClawTokenService(http, s.base_url).register("not-an-email", "abc")
        assert info.value.code == "INVALID_INPUT"


# --- 9. the audit log tells a prompt from its outcome ------------------------------------------


async def _commands(bot: TokenBot, chat: Chat) -> list[tuple[str, str]]:
    return [(e.command, e.outcome) for e in reversed(await bot.store.list_audit(chat.owner, 50))]


async def test_a_prompt_is_recorded_as_prompted_then_confirmed(
    ocbot: TokenBot, oc: OpenClawTokenSim
) -> None:
    alice = await signed_in(ocbot)
    await alice.send("/openclaw-token auth rotate")
    assert await _commands(ocbot, alice) == [("openclaw.auth.rotate", "prompted")]
    await click(alice, CONFIRM_ACTION)
    assert (await _commands(ocbot, alice))[-1] == ("openclaw.auth.rotate.confirm", "confirmed")
    await alice.send("/openclaw-token auth rotate --yes")  # no prompt: plain ok
    assert (await _commands(ocbot, alice))[-1] == ("openclaw.auth.rotate", "ok")


async def test_a_cancel_is_recorded_as_cancelled(ocbot: TokenBot) -> None:
    alice = await signed_in(ocbot)
    await alice.send("/openclaw-token credits buy --amount 10")
    await click(alice, CANCEL_ACTION)
    assert await _commands(ocbot, alice) == [
        ("openclaw.credits.buy", "prompted"),
        ("openclaw.credits.buy.confirm", "cancelled"),
    ]


async def test_an_expiry_is_recorded_once(ocbot: TokenBot) -> None:
    alice = await signed_in(ocbot)
    now = [1000.0]
    ocbot.services.get(Confirmations).clock = lambda: now[0]
    await alice.send("/openclaw-token auth rotate")
    now[0] += 16 * 60
    await alice.send("/openclaw-token audit show")
    await click(alice, CONFIRM_ACTION)  # too late
    assert "expired" in alice.conv.events[-1].text
    rows = await _commands(ocbot, alice)
    assert rows.count(("openclaw.auth.rotate.confirm", "expired")) == 1
    assert ("openclaw.auth.rotate", "prompted") in rows
    assert not any(outcome == "confirmed" for _, outcome in rows)


# --- 10. --json is the server's JSON as received -----------------------------------------------


async def test_json_is_the_servers_json_as_received(ocbot: TokenBot, oc: OpenClawTokenSim) -> None:
    alice = await signed_in(ocbot)
    async with httpx.AsyncClient() as http:
        headers = {"Authorization": f"Bearer {DEMO_MGMT_KEY}"}
        made = await OpenClawTokenService(http, oc.base_url).create_key(
            DEMO_MGMT_KEY, NewKey(name="raw")
        )
        credits = (await http.get(f"{oc.base_url}/credits", headers=headers)).json()["data"]
        info = (await http.get(f"{oc.base_url}/keys/{made.hash}", headers=headers)).json()
    await alice.send("/openclaw-token credits balance --json")
    await alice.send(f"/openclaw-token keys info {made.hash} --json")
    shown_credits, shown_info = json_blocks(alice)
    assert shown_credits == credits
    assert isinstance(shown_credits["remaining"], int | float)  # a number, not "100.00"
    assert shown_info == info["data"]  # no field added (e.g. no `key: null`)
    assert "key" not in shown_info


# --- 11. past --expires dates never reach the server -------------------------------------------


async def test_a_past_expiry_is_refused_locally(ocbot: TokenBot, oc: OpenClawTokenSim) -> None:
    alice = await signed_in(ocbot)
    await alice.send("/openclaw-token keys create --name old --expires 2020-01-01")
    assert "already past" in alice.conv.text() and "born expired" in alice.conv.text()
    assert oc.stats["POST /keys"] == 0 and not oc.account().keys
    # The real server (and so the simulator) would have made an already-expired key.
    async with httpx.AsyncClient() as http:
        late = await OpenClawTokenService(http, oc.base_url).create_key(
            DEMO_MGMT_KEY, NewKey(name="old", expires_at="2020-01-01T23:59:59Z")
        )
    assert late.expires_at and late.expires_at.startswith("2020-01-01")
    await alice.send("/openclaw-token keys create --name next --expires 2999-01-01")
    assert oc.stats["POST /keys"] == 2
