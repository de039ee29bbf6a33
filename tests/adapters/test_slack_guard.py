"""Every Slack entry point is guarded: an exception nobody expected becomes a private
"something went wrong (ref …)" reply, and the log line of the error carries the same ref.

No Slack input makes the core raise (that is what its own error handling is for), so each test
injects the exception with monkeypatch, on the method the entry point calls.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.slack import conversation as slack_conversation
from adapters.slack.modals import form_view
from bot.core.messages import Destination, FormField, FormRequest, Notice
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.slack import (
    TEAM,
    SlackHarness,
    block_actions,
    mention_event,
    view_submission,
)

REF = re.compile(r"something went wrong \(ref ([0-9a-f]+)\)", re.I)


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    owner = Owner(platform="slack", workspace=TEAM, user="U1")
    await harness.bot.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
    try:
        yield harness
    finally:
        await harness.aclose()


async def explode(*_: Any, **__: Any) -> Any:
    raise RuntimeError("an unexpected bug")


def assert_told_privately(slack: SlackHarness, caplog: pytest.LogCaptureFixture) -> str:
    """The person got one ephemeral with a ref, and the logged error names the same ref."""
    ephemerals = slack.fake.calls_to("chat.postEphemeral")
    refs = [m.group(1) for c in ephemerals if (m := REF.search(json.dumps(c.args)))]
    assert len(refs) == 1, [c.args for c in ephemerals]
    [told] = [c for c in ephemerals if REF.search(json.dumps(c.args))]
    assert told.args["user"] == "U1"
    ref = refs[0]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and ref in r.getMessage()]
    assert errors
    # The traceback is in the log, not the reply (with secrets about: frames, not the message).
    assert errors[0].exc_info is not None or "File " in errors[0].getMessage()
    assert "Traceback" not in json.dumps(told.args) and "an unexpected bug" not in json.dumps(
        told.args
    )
    return ref


async def test_a_slash_command_that_blows_up_is_answered_with_a_ref(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack.bot, "handle", explode)
    delivery = await slack.command("/alltoken-chat", "hello")
    assert delivery.status == 200
    await slack.settle()
    assert_told_privately(slack, caplog)


@pytest.mark.parametrize("where", ["mention", "dm", "thread reply"])
async def test_a_message_that_blows_up_is_answered_with_a_ref(
    slack: SlackHarness,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    fake = slack.fake
    if where == "mention":
        event = mention_event(fake, "C1", "U1", "alltoken chat hi")
    elif where == "dm":
        event = fake.user_message("D1", "U1", "alltoken chat hi")
    else:
        root = fake.user_message("C1", "U1", "a question")
        event = mention_event(fake, "C1", "U1", "alltoken chat hi", thread_ts=root["ts"])
    monkeypatch.setattr(slack.bot, "handle", explode)
    assert (await slack.event(event)).status == 200
    await slack.settle()
    assert_told_privately(slack, caplog)
    [told] = fake.calls_to("chat.postEphemeral")
    assert told.args["channel"] == event["channel"]


async def test_a_button_click_that_blows_up_is_answered_with_a_ref(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack.bot, "handle_action", explode)
    click = block_actions("alltoken.video.cancel", "job-1", message_ts="1700000000.000001")
    assert (await slack.send("interactive", click)).status == 200
    await slack.settle()
    assert_told_privately(slack, caplog)


async def test_a_form_submission_that_blows_up_is_answered_with_a_ref_and_no_secret(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack.bot, "submit_form", explode)
    destination = Destination(
        platform="slack", workspace=TEAM, channel="C1", user="U1", extras={"team": TEAM}
    )
    request = FormRequest(
        form_id="key.alltoken",
        title="AllToken key",
        fields=[FormField(name="key", label="Key", secret=True)],
    )
    view = form_view(request, destination)
    secret = "sk-at-" + "Z9" * 12
    submission = view_submission(view, {"key": secret})
    assert (await slack.send("interactive", submission)).status == 200
    await slack.settle()
    assert_told_privately(slack, caplog)
    assert secret not in caplog.text


async def test_a_job_delivery_that_blows_up_is_answered_with_a_ref(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = slack_conversation.render_messages

    def render(parts: Any) -> Any:
        if any(isinstance(p, Notice) and "Image ready" in p.text for p in parts):
            raise RuntimeError("an unexpected bug")
        return real(parts)

    # The renderer has no input that makes it raise: the bug is injected where the image
    # job's last message is rendered, after the image itself was delivered.
    monkeypatch.setattr(slack_conversation, "render_messages", render)
    await slack.command("/alltoken-image", "a lighthouse")
    await slack.settle()
    assert slack.fake.uploads
    told = [
        c for c in slack.fake.calls if c.method == "chat.update" and REF.search(json.dumps(c.args))
    ]
    assert told, "the progress message should be replaced by the error with its ref"
    ref = REF.search(json.dumps(told[-1].args))
    assert ref is not None
    assert any(ref.group(1) in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
