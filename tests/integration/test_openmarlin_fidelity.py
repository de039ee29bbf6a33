"""The OpenMarlin simulator answers like the real service, and tokenbot reads it right.

What the real service does comes from the OpenMarlin skill's own scripts and SKILL.md:
`completion.credential_bootstrap.status` is `pending_api_key_issue` until the key is issued;
`GET /openapi.json` (no key) is the scripts' connectivity check; a usage event's
`measured_units` is a bare number; `metadata` echoes what the caller sent and nothing else.
The scripts' checks are written out here as small functions (nothing is read from the skill).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.backends.openmarlin.service import (
    OPENAPI_PATH,
    ExecutionRequest,
    ExecutionResult,
    OpenMarlinService,
    TaskInput,
    TaskRequest,
)
from bot.core.app import TokenBot
from bot.core.messages import Fields, Link
from bot.sim.openmarlin.server import OpenMarlinFault, OpenMarlinSim
from bot.sim.openmarlin.world import BOOTSTRAP_PENDING
from tests.conftest import Chat
from tests.integration.test_openmarlin_bot import FAST_SIM, make_bot, parts, until, user

# --- the skill scripts' expectations, as shapes -----------------------------------------------


def script_probe_ok(status: int) -> bool:
    """openclaw_skill_config.probe_server_openapi: any answer that is not an HTTP error."""
    return 200 <= status < 300


def script_units_text(event: dict[str, Any]) -> str:
    """billing.py print_usage_events: `units=<number>`, or `<unknown>` for anything else."""
    units = event.get("measured_units")
    ok = isinstance(units, int | float) and not isinstance(units, bool)
    return str(units) if ok else "<unknown>"


def script_settled_text(event: dict[str, Any]) -> str:
    """billing.py print_usage_events: ` settled=<amount> <unit>` from a flat {amount, unit}."""
    settlement = event.get("settlement")
    if isinstance(settlement, dict):
        amount, unit = settlement.get("amount"), settlement.get("unit")
        if isinstance(amount, int | float) and isinstance(unit, str):
            return f" settled={amount} {unit}"
    return ""


def script_bootstrap_status(session: dict[str, Any]) -> str:
    """registration_session.py completion_summary: `Credential bootstrap: <status>`."""
    completion = session.get("completion")
    boot = completion.get("credential_bootstrap") if isinstance(completion, dict) else None
    return str(boot.get("status", "<unknown>")) if isinstance(boot, dict) else "<none>"


def script_issue_payload(session: dict[str, Any]) -> dict[str, Any]:
    """registration_session.py build_api_key_issue_payload (state must be completed)."""
    assert session["state"] == "completed"
    handoff = session["handoff"]
    if handoff["type"] == "device":
        return {"device_code": handoff["device_code"], "label": "OpenClaw bootstrap"}
    assert handoff["type"] == "browser"
    return {"callback_state": handoff["callback_state"], "label": "OpenClaw bootstrap"}


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
async def om() -> AsyncIterator[OpenMarlinSim]:
    sim = OpenMarlinSim(FAST_SIM.model_copy())
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as c:
        yield c


@pytest.fixture
async def bot(tmp_path: Path, om: OpenMarlinSim) -> AsyncIterator[TokenBot]:
    b = await make_bot(tmp_path / "data", om.base_url)
    try:
        yield b
    finally:
        await b.aclose()


async def _approve(client: httpx.AsyncClient, session: dict[str, Any]) -> None:
    url = session["handoff"]["authorization_url"]
    assert (await client.post(url, data={"decision": "approve"})).status_code in (200, 302)


# --- credential_bootstrap ----------------------------------------------------------------------


@pytest.mark.parametrize("flow", ["device", "workos_callback"])
async def test_bootstrap_status_is_pending_until_the_key_is_issued(
    om: OpenMarlinSim, client: httpx.AsyncClient, flow: str
) -> None:
    base = f"{om.base_url}/v1/registration/sessions"
    created = (await client.post(base, json={"provider": "workos", "auth_flow": flow})).json()
    assert script_bootstrap_status(created) == "<none>"  # no completion while pending
    await _approve(client, created)
    session_url = f"{base}/{created['registration_session_id']}"
    done = (await client.get(session_url)).json()
    assert done["state"] == "completed"
    assert script_bootstrap_status(done) == BOOTSTRAP_PENDING == "pending_api_key_issue"
    issued = await client.post(f"{session_url}/api-keys", json=script_issue_payload(done))
    assert issued.status_code == 201 and issued.json()["secret"].startswith("claw_wsk_")
    after = script_bootstrap_status((await client.get(session_url)).json())
    assert after not in (BOOTSTRAP_PENDING, "<unknown>", "<none>")


async def test_tokenbot_registers_while_the_server_says_pending_api_key_issue(
    bot: TokenBot, om: OpenMarlinSim, client: httpx.AsyncClient
) -> None:
    chat = Chat(bot, "newbie")
    await chat.send("sign up for OpenMarlin")  # a seed-style phrasing, too
    await until(chat.conv, lambda c: bool(parts(c, Link)))
    [job] = await bot.store.jobs_for(chat.owner)
    session_url = f"{om.base_url}/v1/registration/sessions/{job.state['session_id']}"
    # tokenbot issues the key only after a poll shows "completed", which the server pairs with
    # "pending_api_key_issue" (tested above); it must take that as "issue it now".
    await _approve(client, (await client.get(session_url)).json())
    assert await bot.jobs.wait_idle(10)
    assert (await bot.store.get_credential(chat.owner, "openmarlin") or "").startswith("claw_wsk_")
    issues = sum(n for k, n in om.requests.items() if k.endswith("/api-keys"))
    assert issues == 1
    final = (await client.get(session_url)).json()
    assert script_bootstrap_status(final) not in (BOOTSTRAP_PENDING, "<none>")
    assert "stored for you" in chat.conv.events[-1].text


# --- /openapi.json -----------------------------------------------------------------------------


async def test_openapi_document_lists_the_routes_and_needs_no_key(
    om: OpenMarlinSim, client: httpx.AsyncClient
) -> None:
    r = await client.get(f"{om.base_url}{OPENAPI_PATH}")
    assert script_probe_ok(r.status_code) and r.headers["content-type"].startswith(
        "application/json"
    )
    doc = r.json()
    assert doc["openapi"].startswith("3.") and doc["info"]["title"]
    paths = doc["paths"]
    for path, method in [
        ("/v1/registration/sessions", "post"),
        ("/v1/registration/sessions/{id}", "get"),
        ("/v1/registration/sessions/{id}/api-keys", "post"),
        ("/v1/models", "get"),
        ("/v1/executions", "post"),
        ("/v1/tasks", "post"),
        ("/v1/tasks/{id}", "get"),
        ("/v1/balance", "get"),
        ("/v1/usage-events", "get"),
        ("/v1/ledger", "get"),
        ("/v1/topup/sessions", "post"),
        ("/v1/topup/sessions/{id}", "get"),
    ]:
        assert method in paths[path], (path, method)
    # Only the API: no HTML pages, media or simulator controls.
    assert all(p.startswith("/v1/") for p in paths)
    assert paths["/v1/registration/sessions"]["post"]["security"] == []
    assert paths["/v1/balance"]["get"]["security"] == [{"workspaceKey": []}]
    assert "202" in paths["/v1/tasks"]["post"]["responses"]


async def test_tokenbot_status_runs_the_scripts_connectivity_check(
    bot: TokenBot, om: OpenMarlinSim
) -> None:
    chat = await user(bot, om)
    await chat.send("show my OpenMarlin status")
    rows = dict(parts(chat.conv, Fields)[-1].rows)
    assert rows["server"] == f"{om.base_url} — reachable (GET /openapi.json answered HTTP 200)"
    assert rows["key check"] == "works"
    assert om.requests["GET /openapi.json"] == 1
    om.faults.append(OpenMarlinFault(path=OPENAPI_PATH, status=404, error="not_found"))
    await chat.send("/openmarlin status")
    rows = dict(parts(chat.conv, Fields)[-1].rows)
    assert rows["server"].endswith(
        "connectivity check failed (GET /openapi.json answered HTTP 404)"
    )


async def test_status_names_an_unreachable_server(tmp_path: Path) -> None:
    bot = await make_bot(tmp_path / "data", "http://127.0.0.1:9")
    try:
        chat = Chat(bot, "erin")
        await chat.send("/openmarlin status")
        rows = dict(parts(chat.conv, Fields)[-1].rows)
        assert rows["server"] == (
            "http://127.0.0.1:9 — connectivity check failed "
            "(GET /openapi.json failed: connection_error)"
        )
    finally:
        await bot.aclose()


# --- measured_units ----------------------------------------------------------------------------


async def test_usage_events_carry_bare_number_units_and_flat_settlements(
    om: OpenMarlinSim, client: httpx.AsyncClient
) -> None:
    key = om.issue_key(20)
    auth = {"Authorization": f"Bearer {key}"}
    await client.post(
        f"{om.base_url}/v1/executions", json={"instruction": "say hello"}, headers=auth
    )
    task = await client.post(
        f"{om.base_url}/v1/tasks",
        json={"kind": "video", "input": {"prompt": "a plane", "duration_ms": 4000}},
        headers=auth,
    )
    task_url = f"{om.base_url}/v1/tasks/{task.json()['task_id']}"
    async with asyncio.timeout(5):
        while (await client.get(task_url, headers=auth)).json()["status"] != "succeeded":
            await asyncio.sleep(0.05)
    events = (await client.get(f"{om.base_url}/v1/usage-events", headers=auth)).json()["data"]
    assert [e["capability"] for e in events] == ["video", "agent_run"]
    assert script_units_text(events[0]) == "4"
    assert all(script_units_text(e) != "<unknown>" for e in events)
    assert [script_settled_text(e) for e in events] == [" settled=5 credits", " settled=1 credits"]


async def test_tokenbot_activity_shows_the_units(bot: TokenBot, om: OpenMarlinSim) -> None:
    chat = await user(bot, om)
    await chat.send("use openmarlin to say hello")
    await chat.send("show OpenMarlin activity")
    table = chat.conv.events[-1].text
    header = next(line for line in table.splitlines() if line.startswith("when"))
    assert header.split() == [
        "when",
        "capability",
        "status",
        "provider",
        "units",
        "settled",
        "request",
    ]
    row = next(line for line in table.splitlines() if "agent_run" in line)
    cells = row.split()
    units = cells[cells.index("node-a") + 1]
    assert units.isdigit() and int(units) > 0
    assert "1 credit" in row and "{" not in table


# --- metadata echo -----------------------------------------------------------------------------


async def test_metadata_is_echoed_exactly_and_nothing_is_added(
    om: OpenMarlinSim, client: httpx.AsyncClient
) -> None:
    key = om.issue_key(20)
    svc = OpenMarlinService(client, om.base_url)
    sent = {"client": "tokenbot", "ticket": "T-9"}
    for stream in (False, True):
        [*_, plain] = [
            e async for e in svc.execute(key, ExecutionRequest(instruction="hi", stream=stream))
        ]
        [*_, echoed] = [
            e
            async for e in svc.execute(
                key, ExecutionRequest(instruction="hi", stream=stream, metadata=sent)
            )
        ]
        assert isinstance(plain, ExecutionResult) and isinstance(echoed, ExecutionResult)
        assert plain.metadata == {} and echoed.metadata == sent
    task = await svc.submit_task(key, TaskRequest(input=TaskInput(prompt="x"), metadata=sent))
    bare = await svc.submit_task(key, TaskRequest(input=TaskInput(prompt="x", duration_ms=3000)))
    assert task.metadata == sent and bare.metadata is None
    await asyncio.sleep(0.6)
    assert (await svc.get_task(key, task.task_id)).metadata == sent
    done = await svc.get_task(key, bare.task_id)
    assert done.status == "succeeded" and done.metadata is None
    assert done.output and done.output["settlement"] == {
        "subtotal": {"amount": 5, "unit": "credits"}
    }
    bad = await client.post(
        f"{om.base_url}/v1/executions",
        json={"instruction": "hi", "metadata": "nope"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
    assert (await svc.balance(key)).available_balance.amount == Decimal(6)


# --- seed-style phrasings reach the same commands ----------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["top up OpenMarlin 3", "OpenMarlin top up 3", "please top up my OpenMarlin balance by 3"],
)
async def test_seed_style_top_up_starts_the_same_top_up(
    bot: TokenBot, om: OpenMarlinSim, text: str
) -> None:
    reference = await user(bot, om, "ref")
    await reference.send("use openmarlin to top up 3")
    chat = await user(bot, om, "seed")
    await chat.send(text)
    for c in (reference, chat):
        await until(c.conv, lambda conv: any("checkout" in p.url for p in parts(conv, Link)))
        assert all(e.kind == "whisper" for e in c.conv.events)
    [ref_job] = await bot.store.jobs_for(reference.owner)
    [job] = await bot.store.jobs_for(chat.owner)
    assert (
        (job.kind, job.state["amount"])
        == (ref_job.kind, ref_job.state["amount"])
        == (
            "openmarlin.topup",
            "3",
        )
    )
    assert "Top-up of 3 credits" in chat.conv.text()
    assert om.requests["POST /v1/topup/sessions"] == 2
    assert om.requests["POST /v1/executions"] == 0
