"""`/openclaw-token` through the core (TokenBot.handle), over real HTTP to the simulators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.backends.openclaw_token.confirm import CANCEL_ACTION, CONFIRM_ACTION
from bot.backends.openclaw_token.keys import STOP_ACTION, UsageWatchJob
from bot.backends.openclaw_token.service import NewKey, OpenClawTokenService
from bot.core.app import TokenBot
from bot.core.messages import Fields, Notice, Text
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_EMAIL, DEMO_MGMT_KEY, OpenClawTokenSim
from tests.conftest import Chat
from tests.integration.openclaw_support import (
    ADMIN,
    button,
    click,
    eventually,
    failures,
    parts_of,
    rows,
    running_bot,
    running_sim,
    signed_in,
    table,
    texts,
)

H0 = "0" * 16


@pytest.fixture
async def oc() -> AsyncIterator[OpenClawTokenSim]:
    async with running_sim() as s:
        yield s


@pytest.fixture
async def ocbot(tmp_path: Path, sim: AllTokenSim, oc: OpenClawTokenSim) -> AsyncIterator[TokenBot]:
    async with running_bot(tmp_path / "data", sim, oc) as b:
        yield b


@pytest.fixture
async def demo(ocbot: TokenBot) -> Chat:
    """Alice, signed in to the demo account ($100)."""
    return await signed_in(ocbot)


def notices(chat: Chat) -> str:
    return "\n".join(n.text for n in parts_of(chat, Notice))


async def new_key(oc: OpenClawTokenSim, name: str = "agent", **kw: object) -> tuple[str, str]:
    """(hash, value) of a key made straight on the simulator's demo account."""
    import httpx

    from bot.backends.openclaw_token.service import OpenClawTokenService

    async with httpx.AsyncClient() as http:
        made = await OpenClawTokenService(http, oc.base_url).create_key(
            DEMO_MGMT_KEY,
            NewKey(name=name, **kw),
        )
    return made.hash, made.key or ""


# --- signing in ------------------------------------------------------------------------------


async def test_no_management_key_gets_private_sign_in_hints(ocbot: TokenBot) -> None:
    bob = Chat(ocbot, "bob")
    assert await bob.send("/openclaw-token credits balance")
    [w] = bob.conv.of("whisper")
    assert "OpenClaw Token" in w.text and "auth login" in w.text and "private form" in w.text
    [entry] = await ocbot.store.list_audit(bob.owner)
    assert entry.outcome == "denied"


async def test_login_with_email_goes_through_a_private_form(ocbot: TokenBot) -> None:
    bob = Chat(ocbot, "bob")
    await bob.send("/openclaw-token auth login --email")
    [form] = bob.conv.forms
    assert form.form_id == "openclaw.login"
    assert [(f.name, f.secret) for f in form.fields] == [("email", False), ("password", True)]
    assert not await ocbot.submit_form(
        bob.inbound("x"), form.form_id, {"email": DEMO_EMAIL, "password": "nope"}, bob.conv
    )
    assert failures(bob)[-1].code == "INVALID_CREDENTIALS"
    assert await ocbot.store.get_credential(bob.owner, "openclaw_token") is None
    assert await ocbot.submit_form(
        bob.inbound("x"), form.form_id, {"email": DEMO_EMAIL, "password": "Demo1234!"}, bob.conv
    )
    stored = await ocbot.store.get_credential(bob.owner, "openclaw_token")
    assert stored and stored.startswith("sk-mgmt-") and stored != DEMO_MGMT_KEY  # login rotates
    assert "Signed in to OpenClaw Token as demo@openclaw.dev" in notices(bob)
    assert stored not in bob.conv.text() and not bob.conv.of("say")


async def test_register_form(ocbot: TokenBot, oc: OpenClawTokenSim) -> None:
    bob = Chat(ocbot, "bob")
    await bob.send("/openclaw-token auth register")
    [form] = bob.conv.forms
    assert form.form_id == "openclaw.register" and sum(f.secret for f in form.fields) == 2
    values = {"email": "bob@example.com", "password": "s3cret-pass", "confirm": "different"}
    assert not await ocbot.submit_form(bob.inbound("x"), form.form_id, values, bob.conv)
    assert "bob@example.com" not in oc.accounts
    values["confirm"] = values["password"]
    assert await ocbot.submit_form(bob.inbound("x"), form.form_id, values, bob.conv)
    assert oc.account("bob@example.com").management_key == await ocbot.store.get_credential(
        bob.owner, "openclaw_token"
    )
    assert not await ocbot.submit_form(bob.inbound("x"), form.form_id, values, bob.conv)
    assert failures(bob)[-1].code == "EMAIL_EXISTS"


async def test_password_in_a_public_message_is_refused_and_deleted(ocbot: TokenBot) -> None:
    bob = Chat(ocbot, "bob", platform="slack")
    bob.conv.deletable = True
    await bob.send("openclaw-token auth login --email bob@example.com hunter2", is_direct=False)
    assert bob.conv.deleted == 1
    [f] = failures(bob)
    assert f.code == "password_in_chat" and "deleted your message" in f.message
    assert "hunter2" not in bob.conv.text() and not bob.conv.of("say")
    entries = await ocbot.store.list_audit(bob.owner)
    assert all("hunter2" not in (e.detail or "") for e in entries)


async def test_whoami_and_json_never_show_the_management_key(demo: Chat) -> None:
    await demo.send("/openclaw-token auth whoami")
    rows = table(demo, "account")
    assert rows["email"] == DEMO_EMAIL and rows["credits remaining"] == "$100.00"
    assert rows["management key"].startswith("…0000")
    await demo.send("/openclaw-token auth whoami --json")
    [block] = [t for t in texts(demo) if t.startswith("```json")]
    assert '"email": "demo@openclaw.dev"' in block
    assert DEMO_MGMT_KEY not in demo.conv.text()
    assert not demo.conv.of("say")  # account data is private


async def test_rotate_needs_the_owners_confirmation(
    demo: Chat, ocbot: TokenBot, oc: OpenClawTokenSim
) -> None:
    await demo.send("/openclaw-token auth rotate")
    assert oc.account().management_key == DEMO_MGMT_KEY  # nothing yet
    await click(demo, CONFIRM_ACTION, user="mallory")
    assert "Only the person who asked" in demo.conv.events[-1].text
    await click(demo, CONFIRM_ACTION)
    stored = await ocbot.store.get_credential(demo.owner, "openclaw_token")
    assert stored == oc.account().management_key != DEMO_MGMT_KEY
    assert "Rotated" in notices(demo) and stored not in demo.conv.text()
    await click(demo, CONFIRM_ACTION)
    assert "Already confirmed" in demo.conv.events[-1].text
    await demo.send("/openclaw-token auth rotate --yes")
    assert await ocbot.store.get_credential(demo.owner, "openclaw_token") != stored
    commands = [e.command for e in await ocbot.store.list_audit(demo.owner)]
    assert "openclaw.auth.rotate.confirm" in commands


async def test_logout(demo: Chat, ocbot: TokenBot) -> None:
    await demo.send("/openclaw-token auth logout")
    assert await ocbot.store.get_credential(demo.owner, "openclaw_token") is None
    assert "Signed out" in notices(demo)


# --- credits ---------------------------------------------------------------------------------


async def test_balance(demo: Chat) -> None:
    await demo.send("/openclaw-token credits balance")
    assert table(demo, "credits") == {"total": "$100.00", "used": "$0.00", "remaining": "$100.00"}


@pytest.mark.parametrize(
    ("amount", "fee", "total", "balance"),
    [
        ("5", "$0.80", "$5.80", "$105.00"),
        ("14.54", "$0.80", "$15.34", "$114.54"),
        ("100", "$5.50", "$105.50", "$200.00"),
    ],
)
async def test_buy_shows_fee_and_total_then_charges_on_confirm(
    demo: Chat, ocbot: TokenBot, amount: str, fee: str, total: str, balance: str
) -> None:
    await demo.send(f"/openclaw-token credits buy --amount {amount}")
    quote = table(demo, "Buy")
    assert quote["platform fee (5.5 %, min $0.80)"] == fee and quote["total charged"] == total
    assert button(demo, CONFIRM_ACTION).label == f"Confirm {total}"
    await click(demo, CONFIRM_ACTION)
    assert await ocbot.jobs.wait_idle(5)
    bought = table(demo, "purchased")
    assert (bought["platform fee"], bought["total charged"], bought["new balance"]) == (
        fee,
        total,
        balance,
    )


async def test_double_confirm_charges_once(
    demo: Chat, ocbot: TokenBot, oc: OpenClawTokenSim
) -> None:
    await demo.send("/openclaw-token credits buy --amount 20")
    token = button(demo, CONFIRM_ACTION).value
    await asyncio.gather(*(click(demo, CONFIRM_ACTION, token) for _ in range(3)))
    await click(demo, CONFIRM_ACTION, token)
    assert await ocbot.jobs.wait_idle(5)
    assert oc.account().remaining == 120 and oc.stats["purchases"] == 1
    assert len([p for p in parts_of(demo, Fields) if p.title == "Credits purchased"]) == 1
    assert "Already confirmed" in demo.conv.text()


async def test_cancel_and_strangers_buy_nothing(demo: Chat, oc: OpenClawTokenSim) -> None:
    await demo.send("/openclaw-token credits buy --amount 50")
    await click(demo, CONFIRM_ACTION, user="mallory")
    await click(demo, CANCEL_ACTION)
    await click(demo, CONFIRM_ACTION)
    assert oc.account().remaining == 100 and oc.stats["purchases"] == 0
    assert "Cancelled" in demo.conv.text() and "was cancelled" in demo.conv.text()


@pytest.mark.parametrize("status", ["running", "delivering"])
async def test_purchase_resumes_after_a_restart_with_the_same_idempotency_key(
    tmp_path: Path, sim: AllTokenSim, oc: OpenClawTokenSim, status: str
) -> None:
    data = tmp_path / "data"
    async with running_bot(data, sim, oc) as first:
        alice = await signed_in(first)
        await alice.send("/openclaw-token credits buy --amount 10")
        payload = {"amount": "10", "idempotency_key": "idem-restart-1"}
        # As if the bot died right after the charge went through, before telling anyone.
        await first.services.get(OpenClawTokenService).purchase(
            DEMO_MGMT_KEY, Decimal(10), "idem-restart-1"
        )
        job = await first.jobs.start(
            "openclaw_purchase", alice.owner, alice.conv.destination, payload
        )
        await first.jobs.cancel_local(job.id)
        await first.store.update_job(job.id, status=status)
    async with running_bot(data, sim, oc) as second:
        assert await second.start() == 1
        assert await second.jobs.wait_idle(5)
        conv = second.test_conversations[alice.conv.destination.conversation_key]  # type: ignore[attr-defined]
        assert "Bought $10.00" in conv.text()
    assert oc.account().remaining == 110 and oc.stats["purchases"] == 1


async def test_history(demo: Chat, oc: OpenClawTokenSim) -> None:
    for amount in (5, 6):
        await demo.send(f"/openclaw-token credits buy --amount {amount}")
        await click(demo, CONFIRM_ACTION)
    assert await demo.bot.jobs.wait_idle(5)
    await demo.send("/openclaw-token credits history --type purchase --limit 2")
    found = [value for _, value in rows(demo, "Transactions")]
    assert found[0] == "purchase +$6.00 → $111.00 · Purchase of $6.00" and len(found) == 2
    assert "--offset 2" in texts(demo)[-1]
    await demo.send("/openclaw-token credits history --json --limit 1")
    assert '"has_more": true' in texts(demo)[-1]


async def test_auto_topup(demo: Chat, oc: OpenClawTokenSim) -> None:
    await demo.send("/openclaw-token credits auto-topup")
    assert table(demo, "Auto top-up")["enabled"] == "no"
    await demo.send("/openclaw-token credits auto-topup --enable --threshold 10 --amount 30")
    rows = table(demo, "Auto top-up")
    assert rows["enabled"] == "yes" and rows["add"] == "$30.00"
    assert oc.account().auto_topup.threshold == 10
    await demo.send("/openclaw-token credits auto-topup --disable")
    assert table(demo, "Auto top-up")["enabled"] == "no"
    assert oc.account().auto_topup.amount == 30  # disabling keeps the settings


# --- keys ------------------------------------------------------------------------------------


async def test_create_shows_the_key_once_privately(demo: Chat, oc: OpenClawTokenSim) -> None:
    demo.conv.destination = demo.conv.destination.model_copy(update={"is_direct": False})
    await demo.send(
        "/openclaw-token keys create --name prod --limit 50 --limit-reset monthly --expires 2099-12-31"
    )
    [value] = [k.value for k in oc.account().keys.values()]
    assert demo.conv.text().count(value) == 1 and not demo.conv.of("say")
    rows = table(demo, "Created key")
    assert rows["credit limit"] == "$50.00 monthly" and rows["expires"] == "2099-12-31 23:59 UTC"
    await demo.send("/openclaw-token keys list")
    await demo.send(f"/openclaw-token keys info {rows['hash']}")
    assert demo.conv.text().count(value) == 1  # never again
    await demo.send("/openclaw-token keys create --name prod")
    assert failures(demo)[-1].code == "KEY_NAME_EXISTS"


async def test_list_filters_and_sorts(demo: Chat, oc: OpenClawTokenSim) -> None:
    for name, usage in (("small", "1"), ("big", "20"), ("mid", "10")):
        h, _ = await new_key(oc, name)
        from bot.sim.openclaw_token.state import UsageEvent

        oc.key(h).events.append(UsageEvent(oc.now(), "gpt-4o", 10, Decimal(usage)))
    await demo.send("/openclaw-token keys list --filter usage>5 --sort -usage")
    assert list(table(demo, "key(s)")) == ["big", "mid"]
    await demo.send('/openclaw-token keys list --filter "usage<=10" --sort name')
    assert list(table(demo, "key(s)")) == ["mid", "small"]
    await demo.send("/openclaw-token keys list --json --filter disabled")
    assert '"total": 0' in texts(demo)[-1]


async def test_info_update_and_errors(demo: Chat, oc: OpenClawTokenSim) -> None:
    h, _ = await new_key(oc, "tune", credit_limit=Decimal(5), limit_reset="daily")
    await demo.send(f"/openclaw-token keys info {h}")
    assert table(demo, "Key tune")["credit limit"] == "$5.00 daily"
    await demo.send(f"/openclaw-token keys update {h} --limit 12 --limit-reset weekly --disabled")
    rows = table(demo, "Updated key")
    assert rows["credit limit"] == "$12.00 weekly" and rows["status"] == "disabled"
    await demo.send(f"/openclaw-token keys update {h} --limit none --enabled")
    rows = table(demo, "Updated key")
    assert rows["credit limit"] == "no limit" and rows["status"] == "active"
    await demo.send(f"/openclaw-token keys info {H0}")
    f = failures(demo)[-1]
    assert f.code == "KEY_NOT_FOUND" and f.request_id and "keys list" in (f.hint or "")


async def test_rotate_and_revoke_with_confirmation(demo: Chat, oc: OpenClawTokenSim) -> None:
    h, value = await new_key(oc, "spin")
    await demo.send(f"/openclaw-token keys rotate {h}")
    assert oc.key(h).value == value
    await click(demo, CONFIRM_ACTION)
    assert oc.key(h).value != value and oc.key(h).value in demo.conv.text()
    await demo.send(f"/openclaw-token keys revoke {h}")
    await click(demo, CONFIRM_ACTION)
    assert oc.key(h).revoked_at is not None
    await demo.send(f"/openclaw-token keys revoke {h} --yes")
    assert failures(demo)[-1].code == "KEY_ALREADY_REVOKED"
    await demo.send(f"/openclaw-token keys rotate {h} --yes")
    assert failures(demo)[-1].code == "KEY_REVOKED"


async def test_revoke_all(demo: Chat, oc: OpenClawTokenSim) -> None:
    for name in ("a", "b", "c"):
        await new_key(oc, name)
    await demo.send("/openclaw-token keys revoke-all")
    assert not any(k.revoked_at for k in oc.account().keys.values())
    await click(demo, CONFIRM_ACTION)
    assert all(k.revoked_at for k in oc.account().keys.values())
    assert table(demo, "Revoked 3 of 3")
    await demo.send("/openclaw-token keys revoke-all --yes")
    assert "no active keys" in notices(demo)


async def test_usage_snapshot(demo: Chat, oc: OpenClawTokenSim) -> None:
    h, _ = await new_key(oc, "snap", credit_limit=Decimal(10), limit_reset="monthly")
    await demo.send(f"/openclaw-token keys usage {h}")
    rows = table(demo, "Usage of snap")
    # Labelled as the server's figures: the real server's period figures are placeholders.
    assert rows["used (monthly, server's figure)"] == "$0.00 of $10.00"
    assert rows["left (server's figure)"] == "$10.00"
    assert "resets" in rows


async def test_usage_watch_edits_one_message_until_the_time_limit(
    demo: Chat, ocbot: TokenBot, oc: OpenClawTokenSim
) -> None:
    ocbot.jobs.register(UsageWatchJob(ocbot.services.get(OpenClawTokenService), max_duration_s=2.3))
    h, value = await new_key(oc, "live")
    await demo.send(f"/openclaw-token keys usage {h} --watch --interval 1")
    await demo.conv.wait_for(lambda c: bool(c.of("say")), 5)
    from bot.backends.alltoken.service import ChatMessage

    stream = ocbot.services.get(OpenClawTokenService).proxy_chat(
        value, "gpt-4o", [ChatMessage(role="user", content="hi")]
    )
    _ = [d async for d in stream]
    assert await ocbot.jobs.wait_idle(6)
    [posted] = demo.conv.of("say")
    edits = demo.conv.of("edit")
    assert len(edits) >= 2 and {e.ref for e in edits} == {posted.ref}
    assert "Stopped watching after" in edits[-1].text
    # The live figure moved with the request (lifetime usage is the server's measured one).
    final_rows = dict(next(p for p in edits[-1].parts if isinstance(p, Fields)).rows)
    assert final_rows["usage (lifetime)"] != "$0.00" and "requests (server's figure)" in final_rows
    [job] = await ocbot.store.jobs_for(demo.owner)
    assert job.status == "done"


async def test_usage_watch_stop_button(demo: Chat, ocbot: TokenBot, oc: OpenClawTokenSim) -> None:
    h, _ = await new_key(oc, "stop")
    await demo.send(f"/openclaw-token keys usage {h} --watch --interval 1")
    await demo.conv.wait_for(lambda c: bool(c.of("say")), 5)
    await click(demo, STOP_ACTION, user="mallory")
    assert ocbot.jobs.active == 1
    await click(demo, STOP_ACTION)
    assert await ocbot.jobs.wait_idle(3)
    assert "Stopped watching key" in demo.conv.events[-1].text
    [job] = await ocbot.store.jobs_for(demo.owner)
    assert job.status == "cancelled"


async def test_watch_of_an_unknown_key_fails_fast(demo: Chat, ocbot: TokenBot) -> None:
    await demo.send(f"/openclaw-token keys usage {H0} --watch")
    assert failures(demo)[-1].code == "KEY_NOT_FOUND" and ocbot.jobs.active == 0


# --- integrate -------------------------------------------------------------------------------


async def test_integrate_creates_a_fallback_key_then_status_and_remove(
    demo: Chat, ocbot: TokenBot, oc: OpenClawTokenSim
) -> None:
    await demo.send("/openclaw-token integrate --status")
    assert "No OpenClaw Token fallback" in notices(demo)
    await demo.send("/openclaw-token integrate --limit 2 --limit-reset daily")
    [key] = oc.account().keys.values()
    assert key.name == "tokenbot-fallback" and key.credit_limit == 2
    assert await ocbot.store.get_credential(demo.owner, "openclaw_proxy") == key.value
    assert key.value not in demo.conv.text()
    await demo.send("/openclaw-token integrate --status")
    rows = table(demo, "fallback: on")
    assert (
        key.hash in rows["key"]
        and rows["status"] == "active"
        and "/v1/chat/completions" in rows["proxy"]
    )
    await demo.send("/openclaw-token integrate --status --json")
    assert (
        '"integrated": true' in texts(demo)[-1]
        and '"provider_name": "openclaw-token-fallback"' in texts(demo)[-1]
    )
    await demo.send("/openclaw-token integrate")
    assert failures(demo)[-1].code == "KEY_NAME_EXISTS"
    await demo.send("/openclaw-token integrate --remove")
    assert await ocbot.store.get_credential(demo.owner, "openclaw_proxy") is None


async def test_integrate_an_existing_key_through_a_private_form(
    demo: Chat, ocbot: TokenBot, oc: OpenClawTokenSim
) -> None:
    h, value = await new_key(oc, "mine")
    await demo.send(f"/openclaw-token integrate {h}")
    [form] = demo.conv.forms
    assert form.form_id == "openclaw.integrate" and form.fields[0].secret
    assert not await ocbot.submit_form(
        demo.inbound("x"), form.form_id, {"key": "sk-at-nope"}, demo.conv
    )
    assert failures(demo)[-1].code == "not_a_provisioned_key"
    oc.key(h).disabled = True
    await demo.send(f"/openclaw-token integrate {h}")
    assert not await ocbot.submit_form(demo.inbound("x"), form.form_id, {"key": value}, demo.conv)
    assert failures(demo)[-1].code == "key_disabled"
    await demo.send(f"/openclaw-token integrate {H0}")
    assert not await ocbot.submit_form(demo.inbound("x"), form.form_id, {"key": value}, demo.conv)
    assert failures(demo)[-1].code == "KEY_NOT_FOUND"
    assert await ocbot.store.get_credential(demo.owner, "openclaw_proxy") is None
    oc.key(h).disabled = False
    await demo.send(f"/openclaw-token integrate {h}")
    assert await ocbot.submit_form(demo.inbound("x"), form.form_id, {"key": value}, demo.conv)
    info = await ocbot.store.credential_info(demo.owner, "openclaw_proxy")
    assert info and info.meta == {"hash": h, "name": "mine"}
    # Rotating the integrated key keeps the fallback working; revoking it turns the fallback off.
    await demo.send(f"/openclaw-token keys rotate {h} --yes")
    assert await ocbot.store.get_credential(demo.owner, "openclaw_proxy") == oc.key(h).value
    await demo.send(f"/openclaw-token keys revoke {h} --yes")
    assert await ocbot.store.get_credential(demo.owner, "openclaw_proxy") is None
    assert "fallback is now off" in notices(demo)


# --- audit -----------------------------------------------------------------------------------


async def test_audit_show_own_and_admin_only_all(ocbot: TokenBot) -> None:
    alice = await signed_in(ocbot, "alice")
    bob = await signed_in(ocbot, "bob")
    await alice.send("/openclaw-token credits balance")
    await bob.send("/openclaw-token keys info zzz")
    await bob.send("/alltoken-chat hi")
    await bob.send("/openclaw-token audit show")
    own = [value for _, value in rows(bob, "Your recent operations")]
    assert any("usage_error" in v for v in own) and any("denied" in v for v in own)
    assert not any("credits.balance" in v for v in own)
    await bob.send("/openclaw-token audit show --all")
    assert failures(bob)[-1].code == "admin_only"
    assert (await ocbot.store.list_audit(bob.owner, 1))[0].outcome == "failed"
    root = await signed_in(ocbot, ADMIN)
    await root.send("/openclaw-token audit show --all --limit 50")
    everyone = " ".join(value for _, value in rows(root, "everyone"))
    assert "console:alice · openclaw.credits.balance · ok · request req_" in everyone
    assert "console:bob" in everyone


# --- the GitHub device flow as a durable job --------------------------------------------------


async def test_device_login_pending_slow_down_success(
    ocbot: TokenBot, oc: OpenClawTokenSim
) -> None:
    carol = Chat(ocbot, "carol")
    await carol.send("/openclaw-token auth login")
    await carol.conv.wait_for(lambda c: "enter the code" in c.text(), 5)
    session = oc.device.find()
    assert session.user_code in carol.conv.text() and "/login/device" in carol.conv.text()
    assert not carol.conv.of("say")  # the code is private
    oc.script_device(["authorization_pending", "slow_down"])
    await eventually(lambda: any(a == "slow_down" for _, a in session.polls))
    oc.approve_device(session.user_code)
    assert await ocbot.jobs.wait_idle(5)
    answers = [a for _, a in session.polls]
    assert answers[-1] == "success" and "slow_down" in answers
    # After slow_down the job waits the longer interval: no natural slow_down follows.
    assert answers.count("slow_down") == 1
    slow = answers.index("slow_down")
    gap = session.polls[slow + 1][0] - session.polls[slow][0]
    assert gap >= 0.05 + 0.1 - 0.01
    assert await ocbot.store.get_credential(carol.owner, "openclaw_token") == DEMO_MGMT_KEY
    assert "via GitHub" in notices(carol) and DEMO_MGMT_KEY not in carol.conv.text()
    [job] = await ocbot.store.jobs_for(carol.owner)
    assert job.status == "done" and "access_token" not in job.state


async def test_device_login_expired(ocbot: TokenBot, oc: OpenClawTokenSim) -> None:
    carol = Chat(ocbot, "carol")
    await carol.send("/openclaw-token auth login")
    await carol.conv.wait_for(lambda c: "enter the code" in c.text(), 5)
    oc.expire_device()
    assert await ocbot.jobs.wait_idle(5)
    f = failures(carol)[-1]
    assert f.code == "expired_token" and "auth login" in (f.hint or "")
    assert await ocbot.store.get_credential(carol.owner, "openclaw_token") is None
    [job] = await ocbot.store.jobs_for(carol.owner)
    assert job.status == "failed"


async def test_device_login_survives_a_restart(
    tmp_path: Path, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    data = tmp_path / "data"
    async with running_bot(data, sim, oc) as first:
        carol = Chat(first, "carol")
        await carol.send("/openclaw-token auth login")
        await carol.conv.wait_for(lambda c: "enter the code" in c.text(), 5)
    oc.approve_device()
    async with running_bot(data, sim, oc) as second:
        assert await second.start() == 1
        assert await second.jobs.wait_idle(5)
        assert await second.store.get_credential(carol.owner, "openclaw_token") == DEMO_MGMT_KEY
    assert len(oc.device.sessions) == 1  # the same sign-in, not a new code


async def test_replies_in_a_channel_are_private(ocbot: TokenBot) -> None:
    dana = Chat(ocbot, "dana", platform="slack")
    await ocbot.store.put_credential(dana.owner, "openclaw_token", DEMO_MGMT_KEY)
    await dana.send("/openclaw-token credits balance", is_direct=False, command="/openclaw-token")
    await dana.send("openclaw-token keys list", is_direct=False)
    assert len(dana.conv.of("whisper")) == 2 and not dana.conv.of("say")
    assert not await dana.send("I really like openclaw-token, it is neat", is_direct=False)


async def test_help(demo: Chat) -> None:
    await demo.send("/openclaw-token")
    assert "credits buy --amount" in texts(demo)[-1]
    await demo.send("/openclaw-token help keys")
    assert "keys revoke-all" in texts(demo)[-1] and "credits buy" not in texts(demo)[-1]
    assert isinstance(demo.conv.events[-1].parts[0], Text)
