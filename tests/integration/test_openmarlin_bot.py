"""OpenMarlin end to end through the core (TokenBot.handle), over real HTTP to the simulator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from bot.backends.alltoken.family import alltoken_family
from bot.backends.openmarlin.family import openmarlin_family
from bot.backends.openmarlin.jobs import OpenMarlinTiming
from bot.backends.openmarlin.render import TOPUP_ACTION
from bot.backends.openmarlin.service import OpenMarlinService
from bot.core.app import TokenBot
from bot.core.messages import Actions, Destination, Failure, Fields, Link, Notice, Text
from bot.core.settings import Settings
from bot.sim.openmarlin.server import OpenMarlinFault, OpenMarlinSim, OpenMarlinSimConfig
from bot.store import JobRecord
from tests.conftest import Chat
from tests.fakes.conversation import RecordingConversation, stop_jobs_while_posting

FAST_SIM = OpenMarlinSimConfig(task_queue_s=0.15, task_run_s=0.3, tokens_per_second=0)
FAST = OpenMarlinTiming(poll_s=0.05)
P = TypeVar("P")


@pytest.fixture
async def om() -> AsyncIterator[OpenMarlinSim]:
    """A fast OpenMarlin simulator on a free port."""
    sim = OpenMarlinSim(FAST_SIM.model_copy())
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def make_bot(data_dir: Path, server_url: str) -> TokenBot:
    """A TokenBot on `server_url` with fast OpenMarlin polling and recording conversations."""
    settings = Settings(
        openmarlin_server_url=server_url,
        alltoken_base_url="http://127.0.0.1:9",
        data_dir=data_dir,
        http_timeout_s=5.0,
        max_polls_per_second=1000.0,
    )
    bot = await TokenBot.create(settings, families=[alltoken_family(), openmarlin_family(FAST)])
    conversations: dict[str, RecordingConversation] = {}

    def factory(dest: Destination) -> RecordingConversation:
        return conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

    for platform in ("console", "slack", "discord"):
        bot.register_platform(platform, factory)
    bot.test_conversations = conversations  # type: ignore[attr-defined]
    return bot


@pytest.fixture
async def bot(tmp_path: Path, om: OpenMarlinSim) -> AsyncIterator[TokenBot]:
    b = await make_bot(tmp_path / "data", om.base_url)
    try:
        yield b
    finally:
        await b.aclose()


async def user(bot: TokenBot, om: OpenMarlinSim, name: str = "alice", balance: float = 25) -> Chat:
    """A console user with a funded OpenMarlin key."""
    chat = Chat(bot, name)
    await bot.store.put_credential(chat.owner, "openmarlin", om.issue_key(balance))
    return chat


def parts(conv: RecordingConversation, kind: type[P], *events: str) -> list[P]:
    return [
        p
        for e in conv.events
        if not events or e.kind in events
        for p in e.parts
        if isinstance(p, kind)
    ]


def failures(conv: RecordingConversation) -> list[Failure]:
    return parts(conv, Failure)


async def until(
    conv: RecordingConversation,
    predicate: Callable[[RecordingConversation], bool],
    timeout: float = 10,
) -> None:
    await conv.wait_for(predicate, timeout)


def has_link(conv: RecordingConversation) -> bool:
    return bool(parts(conv, Link))


# --- registration ------------------------------------------------------------------------------


async def _sign_in_link(chat: Chat) -> str:
    await until(chat.conv, has_link)
    [link] = parts(chat.conv, Link)
    # Private only: never in a message the channel can see.
    assert [e.kind for e in chat.conv.events if link.url in e.text] == ["whisper"]
    return link.url


@pytest.mark.parametrize("command", ["/openmarlin register", "please register OpenMarlin"])
async def test_registration_completes_and_stores_the_key_privately(
    bot: TokenBot, om: OpenMarlinSim, command: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    chat = Chat(bot, "newbie", platform="slack")
    assert await chat.send(command, is_direct=False)
    url = await _sign_in_link(chat)
    async with httpx.AsyncClient() as client:
        page = await client.get(url)
        assert page.status_code == 200 and "Approve" in page.text and "Deny" in page.text
        done = await client.post(url, data={"decision": "approve", "email": "new@example.com"})
        assert done.status_code == 200
    assert await bot.jobs.wait_idle(10)
    secret = await bot.store.get_credential(chat.owner, "openmarlin")
    assert secret and secret.startswith("claw_wsk_")
    info = await bot.store.credential_info(chat.owner, "openmarlin")
    assert (
        info
        and info.meta["workspace_id"].startswith("ws_")
        and info.meta["source"] == "registration"
    )
    confirm = chat.conv.events[-1]
    assert confirm.kind == "whisper" and "stored for you" in confirm.text
    everything = chat.conv.text() + caplog.text
    assert secret not in everything
    # Nothing is asked for in chat: no form, and the link message says so.
    assert not chat.conv.forms and "never asks for your password" in everything
    [job] = await bot.store.jobs_for(chat.owner)
    assert job.status == "done" and not job.state.get("device_code")
    await chat.send("use openmarlin balance")
    assert "10 credits" in chat.conv.events[-1].text  # the new account's grant


async def test_registration_browser_callback_flow(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = Chat(bot, "bob")
    await chat.send("/openmarlin register browser")
    url = await _sign_in_link(chat)
    assert "/authorize?state=" in url
    async with httpx.AsyncClient() as client:
        r = await client.post(url, data={"decision": "approve"})
        assert r.status_code == 302 and "/auth/callback" in r.headers["location"]
    assert await bot.jobs.wait_idle(10)
    assert (await bot.store.get_credential(chat.owner, "openmarlin") or "").startswith("claw_wsk_")


async def test_registration_denied(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = Chat(bot, "carol")
    await chat.send("use openmarlin register")
    url = await _sign_in_link(chat)
    async with httpx.AsyncClient() as client:
        r = await client.post(url, data={"decision": "deny"})
        assert "denied" in r.text.lower()
    assert await bot.jobs.wait_idle(10)
    [fail] = failures(chat.conv)
    assert fail.code == "registration_denied" and "/openmarlin register" in (fail.hint or "")
    assert fail.request_id and fail.request_id.startswith("rs_")
    assert await bot.store.get_credential(chat.owner, "openmarlin") is None
    [job] = await bot.store.jobs_for(chat.owner)
    assert job.status == "failed" and job.state["device_code"] is None


async def test_registration_expired(bot: TokenBot, om: OpenMarlinSim) -> None:
    om.config.registration_ttl_s = 0.2
    chat = Chat(bot, "dave")
    await chat.send("/openmarlin register")
    url = await _sign_in_link(chat)
    assert await bot.jobs.wait_idle(10)
    [fail] = failures(chat.conv)
    assert fail.code == "registration_expired"
    assert "again" in (fail.hint or "") and "5 minutes" in (fail.hint or "")
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 410
    assert await bot.store.get_credential(chat.owner, "openmarlin") is None


# --- executions --------------------------------------------------------------------------------


async def test_execution_streams_into_the_chat(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om)
    await chat.send("Use OpenMarlin to say hello")
    [event] = chat.conv.events
    assert event.kind == "stream" and "Hello!" in event.text
    [trailer] = event.parts
    assert isinstance(trailer, Notice)
    assert "on `node-a`" in trailer.text and "request req_" in trailer.text
    # The real service's metadata only echoes what was sent: no charge is stated, none shown.
    assert "credit" not in trailer.text and "client" not in trailer.text
    [usage] = await bot.store.list_usage(chat.owner)
    assert (
        usage.service == "openmarlin" and usage.request_id and usage.model == "openai-codex/gpt-5.4"
    )


async def test_execution_as_one_reply_when_the_server_does_not_stream(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    om.config.stream = False
    chat = await user(bot, om)
    await chat.send("/openmarlin summarize this page with model openai-codex/gpt-5.4")
    [event] = chat.conv.events
    assert event.kind == "say"
    assert isinstance(event.parts[0], Text) and "Summary:" in event.parts[0].markdown
    assert "openai-codex/gpt-5.4" in event.text


async def test_execution_error_mid_stream_keeps_the_text_and_names_the_code(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    chat = await user(bot, om)
    await chat.send("use openmarlin to do this [[fail]] please now")
    [event] = chat.conv.events
    assert event.kind == "stream" and event.text
    assert "stopped early" in event.parts[0].text  # type: ignore[union-attr]
    fail = event.parts[1]
    assert isinstance(fail, Failure) and fail.code == "execution_failed" and fail.request_id


@pytest.mark.parametrize(
    ("text", "code", "restated"),
    [
        (
            "use openmarlin with labels region= to say hi",
            "invalid_routing_labels",
            "labels `region=`",
        ),
        (
            "use openmarlin on provider node-c to say hi",
            "provider_unavailable",
            "provider `node-c`",
        ),
        (
            "use openmarlin on provider node-a with labels region=us to say hi",
            "provider_label_mismatch",
            "provider `node-a`, labels `region=us`",
        ),
        (
            "use openmarlin with model acme/unknown-1 to say hi",
            "provider_route_not_found",
            "no provider",
        ),
        ("use openmarlin on provider node-zz to say hi", "execution_provider_not_found", "node-zz"),
        (
            "use openmarlin with labels region=mars to say hi",
            "execution_provider_not_found",
            "region=mars",
        ),
        (
            "use openmarlin with labels tier=standard to say hi",
            "execution_provider_ambiguous",
            "no provider, labels `tier=standard`",
        ),
        (
            "use openmarlin on provider render-1 to say hi",
            "execution_kind_not_available",
            "render-1",
        ),
    ],
)
async def test_each_routing_error_is_explained_with_what_was_sent(
    bot: TokenBot, om: OpenMarlinSim, text: str, code: str, restated: str
) -> None:
    chat = await user(bot, om)
    await chat.send(text)
    [fail] = failures(chat.conv)
    assert fail.code == code
    assert f"Sent: {restated}" in fail.message or restated in fail.message
    assert fail.request_id and fail.request_id.startswith("req_")
    assert "automatically" in (fail.hint or "")
    assert chat.conv.events[0].kind == "say"


async def test_model_without_slash_is_a_usage_error(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om)
    await chat.send("use openmarlin with model gpt-5.4 to say hi")
    [event] = chat.conv.events
    assert event.kind == "whisper" and "vendor/model" in event.text and "Usage:" in event.text
    assert om.execution_count == 0


async def test_model_and_provider_are_checked_against_the_model_list_first(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    chat = await user(bot, om)
    await chat.send(
        "use openmarlin with model anthropic/claude-sonnet-4-6 on provider node-b to say hi"
    )
    [fail] = failures(chat.conv)
    assert fail.code == "provider_model_mismatch" and "`node-a`" in (fail.hint or "")
    assert om.requests["POST /v1/executions"] == 0 and om.requests["GET /v1/models"] == 1
    await chat.send(
        "use openmarlin with model anthropic/claude-sonnet-4-6 on provider node-a to say hi"
    )
    assert chat.conv.events[-1].kind == "stream"
    assert om.requests["POST /v1/executions"] == 1


# --- tasks -------------------------------------------------------------------------------------


async def test_task_progress_in_one_message_then_the_video_link(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    chat = await user(bot, om)
    await chat.send("use openmarlin to generate a video of a plane landing --duration=4s")
    assert await bot.jobs.wait_idle(10)
    first = chat.conv.events[0]
    assert first.kind == "say" and "task_" in first.text and "queued" in first.text
    edits = chat.conv.of("edit")
    assert {e.ref for e in edits} == {first.ref}
    assert any("running" in e.text for e in edits)
    [link, _thumb] = parts(chat.conv, Link)
    assert link.url.endswith(".mp4")
    details = parts(chat.conv, Fields)[-1]
    # The nested settlement reads as words, and the echoed metadata tokenbot sent is not shown.
    assert ("settlement", "subtotal 5 credits") in details.rows
    assert ("duration ms", "4000") in details.rows
    assert not any(name == "client" or "{" in value for name, value in details.rows)
    async with httpx.AsyncClient() as client:
        assert (await client.get(link.url)).content[4:8] == b"ftyp"
    [job] = await bot.store.jobs_for(chat.owner)
    assert job.status == "done"
    await chat.send(f"use openmarlin task status {job.state['task_id']}")
    assert "succeeded" in chat.conv.events[-1].text


async def test_task_status_watches_a_task_started_elsewhere(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    from bot.backends.openmarlin.service import TaskInput, TaskRequest

    om.config.task_run_s = 0.6
    chat = await user(bot, om)
    key = await bot.store.get_credential(chat.owner, "openmarlin")
    assert key is not None
    started = await bot.services.get(OpenMarlinService).submit_task(
        key, TaskRequest(input=TaskInput(prompt="x"))
    )
    await chat.send(f"use openmarlin task status {started.task_id}")
    await chat.send(f"use openmarlin task status {started.task_id}")
    assert "Already watching it" in chat.conv.of("whisper")[-1].text
    assert await bot.jobs.wait_idle(10)
    assert "succeeded" in chat.conv.events[-1].text and len(parts(chat.conv, Link)) == 2
    await chat.send("use openmarlin task status task_nope")
    assert failures(chat.conv)[-1].code == "not_found"


async def test_task_failure_shows_the_error(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om)
    await chat.send("use openmarlin to render a video of nothing [[fail]]")
    assert await bot.jobs.wait_idle(10)
    last = chat.conv.events[-1]
    assert last.kind == "edit" and last.ref == chat.conv.events[0].ref
    [fail] = failures(chat.conv)
    assert (
        fail.code == "generation_failed" and fail.request_id and fail.request_id.startswith("task_")
    )
    assert "provider" not in (fail.hint or "").replace("no model, provider", "")
    [job] = await bot.store.jobs_for(chat.owner)
    assert job.status == "failed"


async def test_task_says_routing_hints_were_not_sent(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om)
    await chat.send("use openmarlin to make a video of waves with model x/y on provider node-a")
    assert await bot.jobs.wait_idle(10)
    assert "model x/y, provider node-a) was not sent" in chat.conv.events[0].text


async def test_task_executor_not_found(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om)
    await chat.send("use openmarlin to render a video of a cube --aspect-ratio=4:3")
    assert await bot.jobs.wait_idle(10)
    [fail] = failures(chat.conv)
    assert fail.code == "task_executor_not_found" and "video request" in (fail.hint or "")
    assert "on provider" not in (fail.hint or "")


async def test_task_resumes_after_a_restart(tmp_path: Path, om: OpenMarlinSim) -> None:
    om.config.task_queue_s, om.config.task_run_s = 0.2, 1.0
    first = await make_bot(tmp_path / "data", om.base_url)
    chat = await user(first, om)
    await chat.send("use openmarlin to generate a video of a harbour in the background")
    [job] = await first.store.jobs_for(chat.owner)
    async with asyncio.timeout(10):
        while not (await first.store.get_job(job.id)).state.get("task_id"):  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
    await first.aclose()  # the process stops while the task runs

    second = await make_bot(tmp_path / "data", om.base_url)
    try:
        assert await second.start() == 1
        assert await second.jobs.wait_idle(10)
        [conv] = second.test_conversations.values()  # type: ignore[attr-defined]
        assert len(parts(conv, Link)) == 2 and "succeeded" in conv.events[-1].text
        assert om.requests["POST /v1/tasks"] == 1
        assert (await second.store.get_job(job.id)).status == "done"  # type: ignore[union-attr]
        assert await second.start() == 0
    finally:
        await second.aclose()


async def test_a_task_stopped_mid_submit_keeps_its_id_and_resumes_it(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    # The leases lapsed while the submit (paid, no idempotency key) was on the wire: the stop
    # waits for the answer and the id is saved, so the job is not "submit interrupted".
    chat = await user(bot, om)
    om.config.latency_ms = 400
    await chat.send("use openmarlin to generate a video of a harbour")
    [job] = await bot.store.jobs_for(chat.owner)
    async with asyncio.timeout(10):
        while not (await bot.store.get_job(job.id)).state.get("submit_started"):  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
    bot.jobs.stop_all_local()
    await asyncio.gather(*bot.jobs._tasks.values(), return_exceptions=True)
    om.config.latency_ms = 0
    stopped = await bot.store.get_job(job.id)
    assert stopped is not None and stopped.status == "running" and stopped.state["task_id"]
    assert await bot.jobs.renew_and_take_over() == 1  # its own row, claimed again
    assert await bot.jobs.wait_idle(10)
    assert (await bot.store.get_job(job.id)).status == "done"  # type: ignore[union-attr]
    assert om.requests["POST /v1/tasks"] == 1
    assert failures(chat.conv) == []


async def test_a_task_stopped_as_its_submit_flag_is_written_still_submits_and_keeps_its_id(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    # The stop lands while the "submit started" write is being answered: the flag is in the
    # row, so the task must be submitted and its id kept — else the next holder would wait
    # for a task that was never sent, then end it as "submit interrupted".
    chat = await user(bot, om)
    original = bot.store.update_job
    flag_written = asyncio.Event()

    async def slow_to_answer(job_id: str, **fields: Any) -> JobRecord:
        record = await original(job_id, **fields)
        if (fields.get("state") or {}).get("submit_started"):
            flag_written.set()
            await asyncio.sleep(0.2)  # written; the answer is slow
        return record

    bot.store.update_job = slow_to_answer  # type: ignore[method-assign]
    await chat.send("use openmarlin to generate a video of a harbour")
    await asyncio.wait_for(flag_written.wait(), 10)
    bot.jobs.stop_all_local()
    await asyncio.gather(*bot.jobs._tasks.values(), return_exceptions=True)
    [job] = await bot.store.jobs_for(chat.owner)
    assert job.state.get("submit_started") and job.state.get("task_id"), job.state
    assert om.requests["POST /v1/tasks"] == 1
    assert await bot.jobs.renew_and_take_over() == 1  # its own row, claimed again
    assert await bot.jobs.wait_idle(10)
    assert (await bot.store.get_job(job.id)).status == "done"  # type: ignore[union-attr]
    assert om.requests["POST /v1/tasks"] == 1


async def test_a_task_stopped_while_its_result_is_posted_is_delivered_once(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    # Seen with two replicas: the leases lapsed while the result was on the wire, the job
    # resumed in "delivering" and posted it again. The stop now waits for the platform's
    # answer and the row is marked done (and settled once) before the task stops.
    chat = await user(bot, om)
    chat.conv.hold_messages("succeeded")
    await chat.send("use openmarlin to generate a video of a harbour")
    await stop_jobs_while_posting(chat.conv, "succeeded", bot.jobs)
    [job] = await bot.store.jobs_for(chat.owner)
    assert job.status == "done", job
    assert await bot.jobs.renew_and_take_over() == 0
    assert chat.conv.text().count("succeeded") == 1
    assert len(await bot.store.list_usage(chat.owner)) == 1


# --- billing -----------------------------------------------------------------------------------


def _topup_button(conv: RecordingConversation) -> tuple[str, str]:
    [actions] = parts(conv, Actions)
    [button] = actions.buttons
    return button.action_id, button.value


async def _pay(conv: RecordingConversation, decision: str) -> None:
    await until(conv, lambda c: any("checkout" in p.url for p in parts(c, Link)))
    link = next(p for p in parts(conv, Link) if "checkout" in p.url)
    assert [e.kind for e in conv.events if link.url in e.text] == ["whisper"]
    async with httpx.AsyncClient() as client:
        assert "Pay" in (await client.get(link.url)).text
        assert (await client.post(link.url, data={"decision": decision})).status_code == 200


async def test_402_offers_a_top_up_that_lands_and_shows_the_balance(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    chat = await user(bot, om, balance=0.5)
    await chat.send("use openmarlin to say hello")
    [event] = chat.conv.events
    assert event.kind == "whisper"
    [fail] = failures(chat.conv)
    assert fail.code == "insufficient_balance" and "recoverable" in fail.message
    [fields] = parts(chat.conv, Fields)
    assert dict(fields.rows) == {
        "current": "0.5 credits",
        "required": "1 credit",
        "shortfall": "0.5 credits",
    }
    action, value = _topup_button(chat.conv)
    assert action == TOPUP_ACTION and value == "0.5"
    assert "Top up 0.5 credits" in event.text

    await bot.handle_action(chat.inbound("click"), action, value, chat.conv)
    await _pay(chat.conv, "pay")
    assert await bot.jobs.wait_idle(10)
    last = chat.conv.events[-1]
    assert last.kind == "whisper" and "credit_applied" in last.text
    assert ("available", "1 credit") in parts(chat.conv, Fields)[-1].rows
    await chat.send("use openmarlin to say hello")
    assert chat.conv.events[-1].kind == "stream"


async def test_payment_failed(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om, balance=2)
    await chat.send("/openmarlin top up 5")
    await _pay(chat.conv, "fail")
    assert await bot.jobs.wait_idle(10)
    [fail] = failures(chat.conv)
    assert fail.code == "payment_failed" and fail.request_id and fail.request_id.startswith("tops_")
    await chat.send("use openmarlin balance")
    assert "2 credits" in chat.conv.events[-1].text


async def test_a_top_up_stopped_mid_create_sends_its_one_checkout_link(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    # Stopped while OpenMarlin was creating the session: the stop waits, the id is saved and
    # the link sent, so the resumed job watches that session (no second checkout, no lost link).
    chat = await user(bot, om, balance=2)
    om.config.latency_ms = 400
    await chat.send("/openmarlin top up 5")
    async with asyncio.timeout(10):
        while not om.requests["POST /v1/topup/sessions"]:
            await asyncio.sleep(0.01)
    bot.jobs.stop_all_local()
    await asyncio.gather(*bot.jobs._tasks.values(), return_exceptions=True)
    om.config.latency_ms = 0
    assert await bot.jobs.renew_and_take_over() == 1  # its own row, claimed again
    await _pay(chat.conv, "pay")  # the one checkout link, whispered once
    assert await bot.jobs.wait_idle(10)
    assert om.requests["POST /v1/topup/sessions"] == 1
    assert "credit_applied" in chat.conv.events[-1].text


async def test_balance_falls_back_to_the_last_known_snapshot(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    chat = await user(bot, om, balance=7)
    before = await bot.store.credential_info(chat.owner, "openmarlin")
    await chat.send("check OpenMarlin balance")
    assert "7 credits" in chat.conv.events[-1].text
    # The snapshot lives beside the key, not in it: the stored key is not rewritten.
    assert await bot.store.credential_info(chat.owner, "openmarlin") == before
    om.faults.append(
        OpenMarlinFault(path="/v1/balance", status=503, error="server_error", times=None)
    )
    await chat.send("use openmarlin balance")
    last = chat.conv.events[-1]
    assert last.kind == "whisper"
    title = parts(chat.conv, Fields)[-1].title
    assert title.startswith("OpenMarlin balance — last known at ")
    assert "7 credits" in last.text and "not a live figure" in last.text
    fail = failures(chat.conv)[-1]
    assert fail.code == "server_error" and fail.request_id and fail.request_id.startswith("req_")


async def test_balance_failure_without_a_snapshot(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om)
    om.faults.append(OpenMarlinFault(path="/v1/balance", status=403, error="api_key_inactive"))
    await chat.send("use openmarlin balance")
    [fail] = failures(chat.conv)
    assert fail.code == "api_key_inactive" and "/openmarlin register" in (fail.hint or "")


async def test_activity_lists_usage_and_ledger(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om)
    await chat.send("use openmarlin to say hello")
    await chat.send("use openmarlin activity")
    text = chat.conv.events[-1].text
    assert chat.conv.events[-1].kind == "whisper"
    assert "agent_run" in text and "usage_debit" in text and "-1 credit" in text


async def test_referral_link_and_a_server_without_it(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om)
    await chat.send("use openmarlin referral link")
    assert any("/invite/" in p.url for p in parts(chat.conv, Link))
    om.config.referrals = False
    await chat.send("use openmarlin referral link")
    assert "this server does not offer referral links" in chat.conv.events[-1].text.lower()


# --- keys, status, bad configuration -------------------------------------------------------------


async def test_missing_key_is_answered_privately(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = Chat(bot, "erin")
    await chat.send("use openmarlin to say hello")
    [event] = chat.conv.events
    assert event.kind == "whisper" and "no OpenMarlin key" in event.text
    assert "/openmarlin register" in event.text
    assert om.execution_count == 0


async def test_keys_are_checked_stored_shown_by_fingerprint_and_removed(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    chat = Chat(bot, "fay")
    good = om.issue_key(3)
    await chat.send("/openmarlin key set claw_wsk_notarealkey000000")
    assert "refused that key" in chat.conv.events[-1].text
    assert await bot.store.get_credential(chat.owner, "openmarlin") is None
    await chat.send(f"/openmarlin key set {good}")
    assert "Stored your OpenMarlin key" in chat.conv.events[-1].text
    assert good not in chat.conv.text() and good[-4:] in chat.conv.text()
    await chat.send("use openmarlin status")
    status = chat.conv.events[-1].text
    assert "works" in status and "registration" in status
    await chat.send("/openmarlin key remove")
    assert await bot.store.get_credential(chat.owner, "openmarlin") is None
    await chat.send("/openmarlin key")
    assert chat.conv.forms and chat.conv.forms[-1].form_id == "key.openmarlin"
    assert await bot.submit_form(chat.inbound("form"), "key.openmarlin", {"key": good}, chat.conv)
    assert await bot.store.get_credential(chat.owner, "openmarlin") == good


async def test_unreachable_server_names_the_url_and_the_setting(tmp_path: Path) -> None:
    b = await make_bot(tmp_path / "data", "http://127.0.0.1:9")
    try:
        chat = Chat(b, "gus")
        await b.store.put_credential(chat.owner, "openmarlin", "claw_wsk_" + "a" * 24)
        await chat.send("use openmarlin to say hello")
        [fail] = failures(chat.conv)
        assert fail.code == "connection_error" and "http://127.0.0.1:9" in fail.message
        assert "OPENMARLIN_SERVER_URL" in (fail.hint or "")
    finally:
        await b.aclose()


async def test_a_server_that_is_not_openmarlin_gives_a_clear_failure(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    chat = await user(bot, om)
    om.faults.append(OpenMarlinFault(path="/v1/models", mode="malformed_json"))
    await chat.send("use openmarlin models")
    [fail] = failures(chat.conv)
    assert fail.code == "bad_response" and "OPENMARLIN_SERVER_URL" in (fail.hint or "")
