"""A slow or failing platform API: the Slack fake answering 429/500 to chat.postMessage and
chat.update, the Discord fake answering 429/500 to an edit or a follow-up. The reply still
arrives (after a retry), or the failure is logged and the user is told where possible."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.backends.alltoken.family import alltoken_family
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.discord import LOADING, DiscordWorld, discord_world
from tests.fakes.slack import TEAM, SlackHarness
from tests.faults.support import PLATFORM_OUTCOMES, leftover_tasks, unhandled_errors

WEBHOOK_MESSAGE = "/webhooks/{application_id}/{token}/messages/{message_id}"
WEBHOOK = "/webhooks/{application_id}/{token}"


def _logged(records: list[logging.LogRecord]) -> bool:
    """Whether tokenbot logged a delivery problem (warning or worse)."""
    return any(
        r.levelno >= logging.WARNING and r.name.split(".")[0] in ("bot", "adapters")
        for r in records
    )


# --- Slack ------------------------------------------------------------------------------------


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    """The Slack adapter in HTTP mode on the fake; U1 has a funded AllToken key."""
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    owner = Owner(platform="slack", workspace=TEAM, user="U1")
    await harness.bot.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
    try:
        yield harness
    finally:
        await harness.aclose()


@pytest.mark.parametrize("method", ["chat.postMessage", "chat.update"])
@pytest.mark.parametrize("status", [429, 500])
async def test_slack_api_fault(
    slack: SlackHarness,
    sim: AllTokenSim,
    method: str,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A streamed chat whose first post or an update is refused once."""
    caplog.set_level(logging.WARNING)
    sim.config.tokens_per_second = 80  # ~0.5 s of streaming: a post, then updates
    error = "ratelimited" if status == 429 else "internal_error"
    retry_after = 1 if status == 429 else None
    slack.fake.fail(method, error, status=status, retry_after=retry_after)
    before = set(asyncio.all_tasks())

    await slack.command("/alltoken-chat", "a short answer [[tokens=40]]")
    await slack.settle()

    calls = slack.fake.calls_to(method)
    assert calls, f"{method} was never called"
    final = [m for m in slack.fake.bot_messages("C1") if "tokens" in json.dumps(m)]
    told = [
        c.method
        for c in slack.fake.calls
        if c.method in ("chat.postEphemeral", "chat.postMessage") and c.args.get("channel") != "C1"
    ] + [f"response_url:{r.payload.get('response_type')}" for r in slack.fake.responses]
    case = f"slack {method} → {status}{' Retry-After 1' if retry_after else ''}"
    if final:
        PLATFORM_OUTCOMES[(case, "")] = "reply arrived (after retry)"
    else:
        PLATFORM_OUTCOMES[(case, "")] = (
            f"not delivered; logged={_logged(caplog.records)}; told via {told}"
        )
    assert final or (_logged(caplog.records) and told), slack.fake.all_text()
    if status == 429:
        assert final, "a 429 with Retry-After must be retried"
    assert not await leftover_tasks(before)
    assert not unhandled_errors(caplog.records)


# --- Discord ----------------------------------------------------------------------------------


@pytest.fixture
async def world(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[DiscordWorld]:
    """Discord with the AllToken family; alice has a funded key."""
    async with discord_world(sim, tmp_path / "data", families=[alltoken_family()]) as w:
        user = w.fake.alice
        owner = Owner(platform="discord", workspace=str(w.fake.guild_id), user=user["id"])
        await w.bot.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
        yield w


@pytest.mark.parametrize(
    ("what", "method", "route"),
    [("edit", "PATCH", WEBHOOK_MESSAGE), ("follow-up", "POST", WEBHOOK)],
)
@pytest.mark.parametrize("status", [429, 500])
async def test_discord_api_fault(
    world: DiscordWorld,
    sim: AllTokenSim,
    what: str,
    method: str,
    route: str,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A long streamed chat (edits, then follow-ups) whose edit or follow-up is refused once."""
    caplog.set_level(logging.WARNING)
    sim.config.tokens_per_second = 0
    world.fake.fail_next(method, route, status, retry_after=0.3)
    before = set(asyncio.all_tasks())

    i = await world.fake.slash("alltoken-chat", prompt="[[tokens=600]] hello", model="gpt-5.4")

    def usage_line() -> bool:
        return any(
            "completion" in m["content"] and not int(m["flags"]) & LOADING
            for m in world.fake.replies(i)
        )

    def failed_calls() -> list[int]:
        return [c.status for c in world.fake.calls_to(method, route) if c.status >= 400]

    try:
        await world.fake.wait_until(lambda: usage_line() or False, 8, what="the usage line")
    except (AssertionError, TimeoutError):
        pass
    await world.bot.jobs.wait_idle(5)
    await asyncio.sleep(0.1)
    assert failed_calls() == [status], "the fault was never hit"
    case = f"discord {what} → {status}{' Retry-After 0.3' if status == 429 else ''}"
    texts = " ".join(m["content"] + json.dumps(m["embeds"]) for m in world.fake.replies(i))
    if usage_line():
        PLATFORM_OUTCOMES[(case, "")] = "reply arrived (after retry)"
    else:
        PLATFORM_OUTCOMES[(case, "")] = f"incomplete; logged={_logged(caplog.records)}"
    assert usage_line() or (_logged(caplog.records) and texts), texts
    if status == 429:
        assert usage_line(), "a 429 with Retry-After must be retried"
    assert not await leftover_tasks(before)
    assert not unhandled_errors(caplog.records)
