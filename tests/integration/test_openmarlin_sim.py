"""The OpenMarlin service against the simulator over real HTTP: the contract, shape by shape."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bot.backends.openmarlin.service import (
    ExecutionChunk,
    ExecutionRequest,
    ExecutionResult,
    ExecutionStart,
    InsufficientBalance,
    OpenMarlinService,
    TaskInput,
    TaskRequest,
)
from bot.core.errors import BackendError
from bot.sim.openmarlin.server import OpenMarlinFault, OpenMarlinSim, OpenMarlinSimConfig


@pytest.fixture
async def om() -> AsyncIterator[OpenMarlinSim]:
    sim = OpenMarlinSim(OpenMarlinSimConfig(task_queue_s=0.05, task_run_s=0.1, tokens_per_second=0))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def svc(om: OpenMarlinSim) -> AsyncIterator[OpenMarlinService]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield OpenMarlinService(client, om.base_url)


async def _events(svc: OpenMarlinService, key: str, **body: Any) -> list[object]:
    return [e async for e in svc.execute(key, ExecutionRequest(**body))]


async def test_device_registration_and_one_time_bootstrap(
    om: OpenMarlinSim, svc: OpenMarlinService
) -> None:
    session = await svc.create_registration()
    assert session.state == "pending_external_auth" and session.handoff.type == "device"
    code = session.handoff.device_code
    assert code and session.handoff.authorization_url and session.expires_at
    with pytest.raises(BackendError) as early:
        await svc.bootstrap_key(session.registration_session_id, device_code=code)
    assert early.value.status == 409
    async with httpx.AsyncClient() as client:
        r = await client.post(session.handoff.authorization_url, data={"decision": "approve"})
        assert r.status_code == 200
    done = await svc.get_registration(session.registration_session_id)
    assert done.state == "completed" and done.completion and done.completion.workspace
    assert (
        done.completion.provider_identity and done.completion.provider_identity.provider == "workos"
    )
    with pytest.raises(BackendError) as wrong:
        await svc.bootstrap_key(session.registration_session_id, device_code="dc_wrong")
    assert wrong.value.code == "invalid_request"
    issued = await svc.bootstrap_key(session.registration_session_id, device_code=code, label="t")
    assert issued.secret.startswith("claw_wsk_") and issued.api_key.status == "active"
    assert issued.secret not in repr(issued)
    with pytest.raises(BackendError) as again:
        await svc.bootstrap_key(session.registration_session_id, device_code=code)
    assert again.value.status == 409
    balance = await svc.balance(issued.secret)
    assert balance.available_balance.amount == Decimal(10)
    assert balance.workspace_id == done.completion.workspace.workspace_id


async def test_browser_registration_uses_callback_state(svc: OpenMarlinService) -> None:
    session = await svc.create_registration("workos_callback")
    handoff = session.handoff
    assert handoff.type == "browser" and handoff.callback_state and handoff.redirect_uri
    assert handoff.device_code is None
    async with httpx.AsyncClient(follow_redirects=True) as client:
        landing = await client.post(handoff.authorization_url or "", data={"decision": "approve"})
        assert "return to your chat" in landing.text
    issued = await svc.bootstrap_key(
        session.registration_session_id, callback_state=handoff.callback_state
    )
    assert issued.secret.startswith("claw_wsk_")


async def test_models_list_providers_and_labels(om: OpenMarlinSim, svc: OpenMarlinService) -> None:
    models = await svc.list_models(om.issue_key(1))
    gpt = next(m for m in models if m.id == "openai-codex/gpt-5.4")
    assert [p.provider_id for p in gpt.providers] == ["node-a", "node-b"]
    assert gpt.provider("node-a").labels["region"] == "eu"  # type: ignore[union-attr]
    assert gpt.providers[0].model_providers == ["openai"]


async def test_executions_stream_or_answer_as_json(
    om: OpenMarlinSim, svc: OpenMarlinService
) -> None:
    key = om.issue_key(5)
    events = await _events(svc, key, instruction="say hello")
    assert isinstance(events[0], ExecutionStart) and events[0].provider_id == "node-a"
    assert any(isinstance(e, ExecutionChunk) for e in events)
    end = events[-1]
    assert isinstance(end, ExecutionResult) and end.streamed and "Hello" in end.text
    assert end.metadata == {}  # nothing sent, nothing echoed: the server adds no metadata
    sent = {"client": "tokenbot", "ticket": "T-1"}
    [single] = await _events(svc, key, instruction="say hello", stream=False, metadata=sent)
    assert isinstance(single, ExecutionResult) and not single.streamed and single.request_id
    assert single.metadata == sent
    assert (await svc.balance(key)).available_balance.amount == Decimal(3)


async def test_routing_errors_and_agent_errors(om: OpenMarlinSim, svc: OpenMarlinService) -> None:
    key = om.issue_key(5)
    with pytest.raises(BackendError) as info:
        await _events(svc, key, instruction="x", provider_id="node-c")
    assert info.value.code == "provider_unavailable" and info.value.request_id
    with pytest.raises(BackendError) as info:
        await _events(svc, key, instruction="x", agent_id="nobody")
    assert info.value.code == "skill_not_available"


async def test_402_carries_the_balances(om: OpenMarlinSim, svc: OpenMarlinService) -> None:
    key = om.issue_key(0)
    with pytest.raises(BackendError) as info:
        await _events(svc, key, instruction="say hello")
    assert info.value.status == 402
    shortfall = InsufficientBalance.from_error(info.value)
    assert shortfall is not None and shortfall.shortfall == Decimal(1)
    with pytest.raises(BackendError) as task_info:
        await svc.submit_task(key, TaskRequest(input=TaskInput(prompt="a video")))
    assert InsufficientBalance.from_error(task_info.value) is not None


async def test_tasks_move_through_their_states(om: OpenMarlinSim, svc: OpenMarlinService) -> None:
    key = om.issue_key(20)
    status = await svc.submit_task(key, TaskRequest(input=TaskInput(prompt="a plane")))
    assert status.status == "queued" and status.task_id.startswith("task_")
    seen = {status.status}
    async with asyncio.timeout(5):
        while not status.terminal:
            await asyncio.sleep(0.02)
            status = await svc.get_task(key, status.task_id)
            seen.add(status.status)
    assert seen >= {"queued", "succeeded"} and status.artifact_url
    failed = await svc.submit_task(key, TaskRequest(input=TaskInput(prompt="x [[fail]]")))
    await asyncio.sleep(0.2)
    failed = await svc.get_task(key, failed.task_id)
    assert failed.status == "failed" and failed.error_code_and_message()[0] == "generation_failed"
    # Refunded: two tasks at 5 credits, one refunded.
    assert (await svc.balance(key)).available_balance.amount == Decimal(15)
    other = om.issue_key(1)
    with pytest.raises(BackendError) as info:
        await svc.get_task(other, status.task_id)
    assert info.value.status == 404


async def test_tasks_reject_routing_fields(om: OpenMarlinSim) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{om.base_url}/v1/tasks",
            json={"kind": "video", "input": {"prompt": "x"}, "model": "a/b"},
            headers={"Authorization": f"Bearer {om.issue_key(9)}"},
        )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_top_up_checkout_usage_and_ledger(om: OpenMarlinSim, svc: OpenMarlinService) -> None:
    key = om.issue_key(1)
    await _events(svc, key, instruction="say hello")
    topup = await svc.create_topup(key, Decimal("2.5"))
    assert topup.status == "pending_payment" and topup.checkout_url
    assert topup.requested_amount and topup.requested_amount.amount == Decimal("2.5")
    async with httpx.AsyncClient() as client:
        page = await client.get(topup.checkout_url)
        assert "2.5 credits" in page.text and "Pay" in page.text
        await client.post(topup.checkout_url, data={"decision": "pay"})
    done = await svc.get_topup(key, topup.topup_session_id)
    assert done.status == "credit_applied" and done.credited_ledger_entry_id and done.completed_at
    assert (await svc.balance(key)).available_balance.amount == Decimal("2.5")
    events = await svc.usage_events(key)
    assert events[0].capability == "agent_run" and events[0].settlement
    ledger = await svc.ledger(key)
    assert [e.type for e in ledger] == ["topup_credit", "usage_debit", "adjustment"]


async def test_auth_errors(om: OpenMarlinSim, svc: OpenMarlinService) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.get(f"{om.base_url}/v1/balance")
    assert r.status_code == 401 and r.json() == {
        "error": "missing_api_key",
        "message": "send Authorization: Bearer claw_wsk_…",
    }
    with pytest.raises(BackendError) as info:
        await svc.balance("claw_wsk_unknown000000000")
    assert info.value.code == "invalid_api_key"
    key = om.issue_key(1)
    om.set_key_status(key, "inactive")
    with pytest.raises(BackendError) as info:
        await svc.balance(key)
    assert info.value.code == "api_key_inactive" and info.value.status == 403


async def test_faults_and_a_429_retry(om: OpenMarlinSim, svc: OpenMarlinService) -> None:
    key = om.issue_key(5)
    om.faults.append(
        OpenMarlinFault(path="/v1/balance", status=429, error="rate_limited", retry_after=0.05)
    )
    assert (await svc.balance(key)).available_balance.amount == Decimal(5)  # retried once
    om.faults.append(OpenMarlinFault(path="/v1/executions", mode="drop_stream"))
    with pytest.raises(BackendError) as info:
        await _events(svc, key, instruction="one two three four five six")
    assert info.value.code in ("connection_error", "bad_response")
    async with httpx.AsyncClient() as client:
        added = await client.post(
            f"{om.base_url}/_sim/faults", json={"path": "/v1/models", "mode": "malformed_json"}
        )
        assert added.status_code == 201
    with pytest.raises(BackendError) as info:
        await svc.list_models(key)
    assert info.value.code == "bad_response"


async def test_referral_endpoint(om: OpenMarlinSim, svc: OpenMarlinService) -> None:
    key = om.issue_key(1)
    data = await svc.referral_link(key)
    assert data["referral_code"] and data["invite_url"].startswith(om.base_url)
    om.config.referrals = False
    with pytest.raises(BackendError) as info:
        await svc.referral_link(key)
    assert info.value.status == 404
