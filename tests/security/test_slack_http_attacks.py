"""HTTP mode under attack: forged, stale, replayed, oversized and malformed requests to
/slack/events get a 4xx before anything parses them, cost at most one short log line each (no
traceback), and correctly signed requests — retries included — are handled exactly once."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.slack import (
    SIGNING_SECRET,
    TEAM,
    SlackHarness,
    encode,
    event_callback,
    signed_headers,
    slash_command,
)


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    owner = Owner(platform="slack", workspace=TEAM, user="U1")
    await harness.bot.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
    try:
        yield harness
    finally:
        await harness.aclose()


async def raw(slack: SlackHarness, body: bytes, headers: dict[str, str]) -> int:
    async with slack.http.post(slack.runner.url, data=body, headers=headers) as resp:
        await resp.read()
        return resp.status


def replies(slack: SlackHarness) -> int:
    """Messages the bot sent anywhere (posts, ephemerals, response_url posts)."""
    posted = [c for c in slack.fake.calls if c.method in ("chat.postMessage", "chat.postEphemeral")]
    return len(posted) + len(slack.fake.responses)


def help_command(slack: SlackHarness) -> tuple[bytes, str]:
    return encode("slash_commands", slash_command("/alltoken-help", channel="C1"))


async def test_forged_stale_non_numeric_and_unsigned_requests_get_401(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    body, ctype = help_command(slack)
    good = signed_headers(body, ctype)
    now = int(time.time())
    attempts = [
        {**good, "X-Slack-Signature": "v0=" + "0" * 64},  # forged
        signed_headers(body, ctype, secret="not-the-secret"),
        signed_headers(body, ctype, timestamp=now - 301),  # stale
        # From the future, with room for the seconds a busy machine takes to get there.
        signed_headers(body, ctype, timestamp=now + 400),
        {**good, "X-Slack-Request-Timestamp": "yesterday"},  # non-numeric
        {**good, "X-Slack-Request-Timestamp": "１７００"},  # non-ASCII digits
        {**good, "X-Slack-Signature": "v0=ünïcode"},
        {"Content-Type": ctype},  # unsigned
        {"Content-Type": ctype, "X-Slack-Signature": good["X-Slack-Signature"]},
    ]
    caplog.set_level(logging.INFO)
    caplog.clear()
    for headers in attempts:
        assert await raw(slack, body, headers) == 401
    await slack.settle()
    assert replies(slack) == 0
    assert_quiet(caplog, len(attempts))


async def test_signed_but_malformed_bodies_get_4xx_and_one_short_line_each(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    form = "application/x-www-form-urlencoded"
    cases = [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),  # JSON, but not a payload
        (b"payload=%ZZ%", form, 400),
        (b"payload=" + urllib.parse.quote("[]").encode(), form, 400),
        (b"{" * 5000, form, 400),  # bolt would read this as JSON: deeply broken
        (b"", form, 400),
        (b"", "application/json", 400),
        (b"\xff\xfe not utf-8", form, 400),
        (b"command=%2Falltoken-help", "text/plain", 415),
        (b"<xml/>", "application/xml", 415),
    ]
    caplog.set_level(logging.INFO)
    caplog.clear()
    for body, ctype, status in cases:
        headers = signed_headers_bytes(body, ctype)
        assert await raw(slack, body, headers) == status, body[:20]
    await slack.settle()
    assert replies(slack) == 0
    assert_quiet(caplog, len(cases))


def signed_headers_bytes(body: bytes, ctype: str) -> dict[str, str]:
    """Slack's v0 signature over raw bytes (the fake's helper needs UTF-8 text)."""
    ts = str(int(time.time()))
    mac = hmac.new(SIGNING_SECRET.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256)
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": "v0=" + mac.hexdigest(),
        "Content-Type": ctype,
    }


def assert_quiet(caplog: pytest.LogCaptureFixture, requests: int) -> None:
    """At most one record per refused request, none with a traceback, each one short line."""
    records = caplog.records
    assert len(records) <= requests, [r.getMessage() for r in records]
    for record in records:
        assert record.exc_info is None and not record.exc_text, record.getMessage()
        message = record.getMessage()
        assert "\n" not in message and len(message) < 200, message
    assert "Traceback" not in caplog.text


async def test_an_oversized_signed_body_gets_413_and_nothing_is_handled(
    slack: SlackHarness,
) -> None:
    payload = slash_command("/alltoken-help", "y" * (2 * 1024 * 1024), channel="C1")
    body, ctype = encode("slash_commands", payload)
    headers = {**signed_headers(body, ctype), "Connection": "close"}
    assert await raw(slack, body, headers) == 413
    await slack.settle()
    assert replies(slack) == 0


async def test_a_replayed_signed_request_is_handled_once(slack: SlackHarness) -> None:
    body, ctype = help_command(slack)
    headers = signed_headers(body, ctype)
    assert await raw(slack, body, headers) == 200
    assert await raw(slack, body, headers) == 200  # acked, but not run again
    await slack.settle()
    assert len(slack.fake.calls_to("chat.postMessage")) == 1
    # A fresh signature for the same command is a new request (Slack signs each one).
    assert (
        await raw(slack, body, signed_headers(body, ctype, timestamp=int(time.time()) + 1)) == 200
    )
    await slack.settle()
    assert len(slack.fake.calls_to("chat.postMessage")) == 2


async def test_retried_deliveries_of_one_event_are_processed_once(
    slack: SlackHarness, sim: AllTokenSim
) -> None:
    event = slack.fake.user_message("D1", "U1", "alltoken cost gpt-5.4-mini 1000 500")
    envelope = event_callback(event, event_id="EvRetried")
    for retry in (None, 1, 2):
        delivery = await slack.post("events_api", envelope, retry_num=retry)
        assert delivery.status == 200
    await slack.settle()
    answers = slack.fake.calls_to("chat.postMessage")
    assert len(answers) == 1 and "total cost" in json.dumps(answers[0].args)
