"""Two Slack HTTP-mode replicas on one database and one fake Slack: a retry, a replayed request
or the second event of one message that reaches the other replica is not processed again."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.slack import (
    TEAM,
    SlackHarness,
    encode,
    event_callback,
    mention_event,
    signed_headers,
)
from tests.restart.replicas import SharedDatabase, shared_db, slack_replicas

__all__ = ["shared_db"]  # the fixture, used by the tests below


@pytest.fixture
async def pair(
    shared_db: SharedDatabase, sim: AllTokenSim
) -> AsyncIterator[tuple[SlackHarness, SlackHarness]]:
    """Replicas a and b behind one fake Slack, on one database; U1 has a funded key."""
    async with slack_replicas(shared_db, sim) as (a, b):
        owner = Owner(platform="slack", workspace=TEAM, user="U1")
        await a.bot.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
        yield a, b


async def _settle(*replicas: SlackHarness) -> None:
    for harness in replicas:
        await harness.settle()


async def test_a_retry_sent_to_the_other_replica_is_processed_once(
    pair: tuple[SlackHarness, SlackHarness],
) -> None:
    a, b = pair
    payload = event_callback(mention_event(a.fake, "C1", "U1", "alltoken help"), event_id="EvR1")
    now = int(time.time())
    # Each retry is signed anew (another timestamp): only the event id tells it was seen.
    first = await a.post("events_api", payload, timestamp=now - 2)
    retry = await b.post("events_api", payload, retry_num=1, timestamp=now - 1)
    again = await a.post("events_api", payload, retry_num=2, timestamp=now)
    assert first.status == retry.status == again.status == 200
    await _settle(a, b)
    assert len(a.fake.calls_to("chat.postMessage")) == 1


async def test_two_events_of_one_message_on_two_replicas_answer_once(
    pair: tuple[SlackHarness, SlackHarness],
) -> None:
    a, b = pair
    event = mention_event(a.fake, "C1", "U1", "alltoken help")
    await a.event(event, event_id="EvM1")
    await b.event({**event, "type": "message", "channel_type": "im"}, event_id="EvM2")
    await _settle(a, b)
    assert len(a.fake.calls_to("chat.postMessage")) == 1


async def test_distinct_events_are_each_processed(
    pair: tuple[SlackHarness, SlackHarness],
) -> None:
    """The control: different messages on the two replicas are both answered."""
    a, b = pair
    await a.event(mention_event(a.fake, "C1", "U1", "alltoken help"), event_id="EvD1")
    await b.event(mention_event(b.fake, "C1", "U1", "alltoken help"), event_id="EvD2")
    await _settle(a, b)
    assert len(a.fake.calls_to("chat.postMessage")) == 2


async def test_a_replayed_signed_request_is_refused_by_the_other_replica(
    pair: tuple[SlackHarness, SlackHarness],
) -> None:
    a, b = pair
    # The very same signed bytes (an attacker's replay): a new event id, so only the
    # signature can tell it was seen.
    payload = event_callback(mention_event(a.fake, "C1", "U1", "alltoken help"), event_id="EvS1")
    body, ctype = encode("events_api", payload)
    headers = signed_headers(body, ctype)
    for harness in (a, b):
        assert harness.runner.url is not None
        async with harness.http.post(harness.runner.url, data=body, headers=headers) as resp:
            assert resp.status == 200
    await _settle(a, b)
    assert len(a.fake.calls_to("chat.postMessage")) == 1
