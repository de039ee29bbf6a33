"""The Slack adapter end to end in HTTP mode: signed requests to the real AsyncApp's aiohttp app,
the real AllToken simulator behind the bot, and the fake Slack Web API recording every call."""

from __future__ import annotations

import asyncio
import json
import struct
import time
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.backends.alltoken.jobs import CANCEL_ACTION
from bot.core.messages import Destination, Notice
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.fakes.slack import (
    BOT_USER,
    TEAM,
    FakeSlack,
    SlackHarness,
    block_actions,
    mention_event,
    slash_command,
    view_submission,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_valid_png(data: bytes) -> None:
    """Signature, then well-formed chunks with correct CRCs: IHDR first, IDAT, IEND last."""
    assert data.startswith(PNG_MAGIC)
    pos, names = len(PNG_MAGIC), []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        name = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(name + body) == crc, name
        names.append(name)
        pos += 12 + length
    assert names[0] == b"IHDR" and b"IDAT" in names and names[-1] == b"IEND"


def owner(user: str = "U1") -> Owner:
    return Owner(platform="slack", workspace=TEAM, user=user)


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    """The adapter in HTTP mode; U1 has a funded AllToken key."""
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    await harness.bot.store.put_credential(owner(), "alltoken", sim.issue_key(10.0))
    try:
        yield harness
    finally:
        await harness.aclose()


def texts(fake: FakeSlack, method: str) -> list[str]:
    """Everything the bot sent through one method, as JSON text (text + blocks)."""
    return [json.dumps(c.args) for c in fake.calls_to(method)]


async def test_bad_signature_and_stale_timestamp_get_401(slack: SlackHarness) -> None:
    payload = slash_command("/alltoken-help", response_url=slack.fake.new_response_url())
    assert (await slack.post("slash_commands", payload, secret="wrong-secret")).status == 401
    stale = int(time.time()) - 10 * 60
    assert (await slack.post("slash_commands", payload, timestamp=stale)).status == 401
    await slack.settle()
    assert not slack.fake.calls_to("chat.postMessage")
    ok = await slack.post("slash_commands", payload)
    assert ok.status == 200
    await slack.settle()
    assert len(slack.fake.calls_to("chat.postMessage")) == 1


async def test_every_slash_command_is_acked_at_once_and_answered(slack: SlackHarness) -> None:
    names = slack.bot.slash_commands
    assert "/alltoken-chat" in names and "/alltoken-key" in names
    answers = ("chat.postMessage", "chat.postEphemeral", "views.open", "upload")
    for name in names:
        before = len(slack.fake.calls) + len(slack.fake.responses)
        with slack.work_held():
            # Acked while its work cannot run: the ack waits for nothing but parsing.
            delivery = await slack.command(name, "", user="U1", channel="C1")
            assert delivery.status == 200 and delivery.body == ""
            assert not [c for c in slack.fake.calls[before:] if c.method in answers], name
        await slack.settle()
        answered = [c.method for c in slack.fake.calls[before:] if c.method in answers]
        assert answered, f"{name} got no answer"


async def test_commands_answer_in_the_channel_or_privately(slack: SlackHarness) -> None:
    fake = slack.fake
    await slack.command("/alltoken-help")
    await slack.command("/alltoken-models", "--type=video")
    await slack.command("/alltoken-cost", "gpt-5.4-mini 1000 500")
    await slack.command("/alltoken-search", "what happened in tech this week")
    await slack.command("/alltoken-key", "status")
    await slack.command("/alltoken-image", "a cat --quality=ultra")  # a usage error
    await slack.settle()
    posts = "\n".join(texts(fake, "chat.postMessage"))
    assert "/alltoken-chat" in posts  # help
    assert "model(s)" in posts  # models
    assert "total cost" in posts and '"fields"' in posts  # cost as section fields
    assert "tokens" in posts  # search carries its usage line
    ephemerals = "\n".join(texts(fake, "chat.postEphemeral"))
    assert "is stored (encrypted)" in ephemerals and "--quality" in ephemerals
    assert all(c.args["user"] == "U1" for c in fake.calls_to("chat.postEphemeral"))


async def test_chat_streams_with_post_then_updates_and_a_usage_line(
    slack: SlackHarness, sim: AllTokenSim
) -> None:
    sim.config.tokens_per_second = 60
    await slack.command("/alltoken-chat", "explain **tides** [[tokens=150]]")
    await slack.settle()
    [post] = slack.fake.calls_to("chat.postMessage")
    updates = slack.fake.calls_to("chat.update")
    assert post.args["channel"] == "C1" and "thread_ts" not in post.args
    assert 1 <= len(updates) <= 5  # ~2.5 s of streaming, at most one update a second
    gaps = [b.at - a.at for a, b in zip([post, *updates], updates, strict=False)]
    assert min(gaps) >= 0.9
    [final] = slack.fake.bot_messages("C1")
    [block] = final["blocks"]
    assert block["type"] == "markdown" and "**" in block["text"]  # Markdown rendered by Slack
    assert "```python" in block["text"] and "tokens" in block["text"]
    assert "`gpt-5.4-mini`" in block["text"]  # the trailer: usage and cost


async def test_mention_streams_natively_in_a_thread(slack: SlackHarness) -> None:
    fake = slack.fake
    event = mention_event(fake, "C1", "U1", "alltoken chat explain **tides**")
    await slack.event(event)
    await slack.settle()
    [start] = fake.calls_to("chat.startStream")
    assert start.args["thread_ts"] == event["ts"]
    assert start.args["recipient_user_id"] == "U1" and start.args["recipient_team_id"] == TEAM
    [stream] = fake.streams.values()
    assert stream.stopped and "tides" in stream.text.lower()
    assert stream.blocks[0]["type"] == "context" and "tokens" in json.dumps(stream.blocks)
    assert not fake.calls_to("chat.update")


async def test_thread_follow_up_continues_with_the_thread_as_context(
    slack: SlackHarness,
) -> None:
    fake = slack.fake
    first = mention_event(fake, "C1", "U1", "alltoken chat claude-haiku-4-5 remember the word teal")
    await slack.event(first)
    await slack.settle()
    follow_up = fake.user_message("C1", "U1", "what word? [[echo-context]]", thread_ts=first["ts"])
    await slack.event(follow_up)
    await slack.settle()
    [replies] = fake.calls_to("conversations.replies")
    assert replies.args["ts"] == first["ts"]
    answers = [s for s in fake.streams.values() if s.thread_ts == first["ts"]]
    assert len(answers) == 2
    echo = answers[1].text
    assert "I received 3 messages" in echo and "remember the word teal" in echo
    assert "`claude-haiku-4-5`" in json.dumps(answers[1].blocks)  # same model as before

    # Someone else chatting in that thread doesn't run a command on their key …
    other = fake.user_message("C1", "U2", "nice one", thread_ts=first["ts"])
    await slack.event(other)
    await slack.settle()
    assert len(fake.streams) == 2 and not fake.calls_to("chat.postEphemeral")
    # … and the thread still continues for the person the bot is talking to.
    again = fake.user_message("C1", "U1", "and once more", thread_ts=first["ts"])
    await slack.event(again)
    await slack.settle()
    assert len(fake.streams) == 3


async def test_plain_channel_message_is_ignored(slack: SlackHarness) -> None:
    await slack.event(slack.fake.user_message("C1", "U1", "lunch anyone?"))
    await slack.settle()
    assert [c.method for c in slack.fake.calls] == ["auth.test"]


async def test_mention_that_is_not_a_command_gets_a_private_hint(slack: SlackHarness) -> None:
    await slack.event(mention_event(slack.fake, "C1", "U1", "hello there"))
    await slack.settle()
    [hint] = texts(slack.fake, "chat.postEphemeral")
    assert "alltoken-help" in hint


async def test_image_is_uploaded_into_the_conversation_with_alt_text(
    slack: SlackHarness,
) -> None:
    fake = slack.fake
    await slack.command("/alltoken-image", "a lighthouse at dusk --size=1024x1024")
    await slack.settle()
    [url] = fake.calls_to("files.getUploadURLExternal")
    assert url.args["alt_txt"] == "a lighthouse at dusk"
    [file_id] = fake.uploads
    data = fake.uploads[file_id]
    assert_valid_png(data)
    assert int(url.args["length"]) == len(data)
    [complete] = fake.calls_to("files.completeUploadExternal")
    assert complete.args["channel_id"] == "C1"
    assert complete.args["files"][0]["id"] == file_id
    assert "Image ready" in fake.bot_messages("C1")[-1]["text"]


async def test_video_cancel_button_cancels_the_job_and_updates_the_message(
    slack: SlackHarness, sim: AllTokenSim
) -> None:
    sim.config.video_seconds = 30
    fake = slack.fake
    await slack.command("/alltoken-video", "slow sunrise")
    await fake.wait_for(lambda f: bool(f.calls_to("chat.postMessage")))
    [job] = await slack.bot.store.jobs_for(owner())
    for _ in range(200):
        refreshed = await slack.bot.store.get_job(job.id)
        if refreshed and refreshed.state.get("task_id"):
            break
        await asyncio.sleep(0.02)
    progress = fake.bot_messages("C1")[0]
    [actions] = [b for b in progress["blocks"] if b["type"] == "actions"]
    [cancel] = actions["elements"]
    assert cancel["action_id"] == CANCEL_ACTION and cancel["value"] == job.id
    click = block_actions(
        CANCEL_ACTION,
        cancel["value"],
        user="U1",
        channel="C1",
        message_ts=progress["ts"],
        response_url=fake.new_response_url(),
    )
    assert (await slack.send("interactive", click)).status == 200
    await slack.settle()
    assert (await slack.bot.store.get_job(job.id)).status == "cancelled"
    assert sim.stats.video_cancellations == 1
    final = fake.find_message("C1", progress["ts"])
    assert final is not None and "cancelled" in final["text"].lower()
    assert not any(b["type"] == "actions" for b in final["blocks"])


async def test_video_link_shows_its_expiry_as_a_slack_date(slack: SlackHarness) -> None:
    await slack.command("/alltoken-video", "waves on a pier --duration=4")
    await slack.settle()
    final = slack.fake.bot_messages("C1")[-1]
    text = json.dumps(final["blocks"])
    assert "<!date^" in text and "{date_short_pretty} {time}" in text
    assert "Video ready" in text


async def test_key_modal_stores_the_key_encrypted_and_never_echoes_it(
    slack: SlackHarness, sim: AllTokenSim
) -> None:
    fake = slack.fake
    await slack.command("/alltoken-key", "", user="U7", trigger_id="trig-key")
    await slack.settle()
    [opened] = fake.calls_to("views.open")
    assert opened.args["trigger_id"] == "trig-key"
    [view] = fake.views
    assert view["callback_id"] == "tokenbot.form"
    key = sim.issue_key(2.0)
    delivery = await slack.send("interactive", view_submission(view, {"key": key}, user="U7"))
    assert delivery.status == 200
    await slack.settle()
    assert await slack.bot.store.get_credential(owner("U7"), "alltoken") == key
    [stored] = texts(fake, "chat.postEphemeral")
    assert "Stored your AllToken key" in stored and key[-4:] in stored
    assert key not in fake.all_text()
    assert key.encode() not in (slack.bot.settings.db_path).read_bytes()


async def test_key_form_without_a_trigger_explains_how_to_open_it(
    slack: SlackHarness,
) -> None:
    await slack.event(mention_event(slack.fake, "C1", "U1", "alltoken key"))
    await slack.settle()
    assert not slack.fake.calls_to("views.open")
    [notice] = texts(slack.fake, "chat.postEphemeral")
    assert "slash command" in notice


async def test_key_pasted_in_a_channel_gets_a_private_rotate_warning(
    slack: SlackHarness,
) -> None:
    fake = slack.fake
    leaked = "sk-at-abcdef0123456789abcdef"
    await slack.event(fake.user_message("C1", "U3", f"here is my key {leaked} oops"))
    await slack.settle()
    [warning] = fake.calls_to("chat.postEphemeral")
    assert warning.args["user"] == "U3" and warning.args["channel"] == "C1"
    body = json.dumps(warning.args)
    assert "key_exposed" in body and "Rotate" in body and "everyone in this channel" in body
    assert leaked not in fake.all_text()
    assert not fake.calls_to("chat.delete")  # a bot can't delete a person's message


async def test_a_retried_event_is_answered_once(slack: SlackHarness) -> None:
    event = mention_event(slack.fake, "C1", "U1", "alltoken help")
    first = await slack.event(event, event_id="Ev1")
    retry = await slack.event(event, event_id="Ev1", retry_num=1)
    assert first.status == retry.status == 200
    # The same message also arrives as a `message` event (another event id): still once.
    await slack.event({**event, "type": "message", "channel_type": "channel"}, event_id="Ev2")
    await slack.settle()
    assert len(slack.fake.calls_to("chat.postMessage")) == 1


async def test_429_on_chat_update_is_retried_after_retry_after(
    slack: SlackHarness, sim: AllTokenSim
) -> None:
    fake = slack.fake
    sim.config.tokens_per_second = 50
    fake.fail("chat.update", "ratelimited", status=429, retry_after=1)
    await slack.command("/alltoken-chat", "a short answer [[tokens=40]]")
    await slack.settle()
    updates = fake.calls_to("chat.update")
    assert len(updates) >= 2
    assert updates[1].at - updates[0].at >= 1.0  # waited for Retry-After
    [message] = fake.bot_messages("C1")
    assert "tokens" in message["blocks"][0]["text"]  # the final text and trailer arrived


async def test_not_in_channel_falls_back_to_response_url_then_dm(
    slack: SlackHarness,
) -> None:
    fake = slack.fake
    fake.not_in_channel.add("GPRIV")
    await slack.command("/alltoken-chat", "hello", channel="GPRIV", channel_name="privategroup")
    await slack.command("/alltoken-cost", "", channel="GPRIV")  # a private answer
    await slack.settle()
    public = [r.payload for r in fake.responses if r.payload.get("response_type") == "in_channel"]
    private = [r.payload for r in fake.responses if r.payload.get("response_type") == "ephemeral"]
    assert len(public) == 1 and "tokens" in json.dumps(public[0])  # the whole answer, once
    assert private and "No AllToken call" in json.dumps(private[0])
    assert not fake.bot_messages("GPRIV")
    # Without a response_url (e.g. a job after it expired) the reply goes to the DM.
    dest = Destination(platform="slack", workspace=TEAM, channel="GPRIV", user="U1")
    await slack.bot.conversation_for(dest).say([Notice(text="your video is ready")])
    [dm] = fake.calls_to("conversations.open")
    assert dm.args["users"] in ("U1", ["U1"])
    assert "your video is ready" in fake.bot_messages("DU1")[0]["text"]


async def test_job_resumes_after_a_restart_from_the_saved_destination(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    sim.config.image_seconds = 1.0
    first = await SlackHarness.start(tmp_path / "data", sim.base_url)
    fake = first.fake
    await first.bot.store.put_credential(owner(), "alltoken", sim.issue_key(5.0))
    await first.command("/alltoken-image", "a red kite", channel="C5")
    await first.runner.idle(5)
    [job] = await first.bot.store.jobs_for(owner())
    for _ in range(200):
        refreshed = await first.bot.store.get_job(job.id)
        if refreshed and refreshed.state.get("task_id"):
            break
        await asyncio.sleep(0.02)
    await first.aclose(stop_fake=False)  # the process stops mid-job
    assert not fake.uploads
    second = await SlackHarness.start(tmp_path / "data", sim.base_url, fake=fake)
    try:
        await second.settle()
        [complete] = fake.calls_to("files.completeUploadExternal")
        assert complete.args["channel_id"] == "C5"
        assert (await second.bot.store.get_job(job.id)).status == "done"
    finally:
        await second.aclose()


async def test_bot_messages_and_edits_are_ignored(slack: SlackHarness) -> None:
    fake = slack.fake
    await slack.event(
        {"type": "message", "channel": "C1", "user": BOT_USER, "text": "alltoken help", "ts": "1.1"}
    )
    await slack.event(
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C1",
            "ts": "1.2",
            "message": {},
        }
    )
    await slack.event(
        {
            "type": "message",
            "channel": "C1",
            "user": "U9",
            "bot_id": "B9",
            "text": "alltoken help",
            "ts": "1.3",
        }
    )
    await slack.settle()
    assert [c.method for c in fake.calls] == ["auth.test"]


async def test_a_command_this_build_lacks_gets_an_ephemeral_ack(slack: SlackHarness) -> None:
    delivery = await slack.command("/not-in-this-build", "x")
    assert delivery.status == 200
    ack = json.loads(delivery.body)
    assert ack["response_type"] == "ephemeral" and "/alltoken-help" in ack["text"]


async def test_under_tokenbot_run_events_share_the_bots_http_server(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url, shared_server=True)
    try:
        await harness.bot.store.put_credential(owner(), "alltoken", sim.issue_key(5.0))
        assert harness.runner.url.endswith(f":{harness.server.port}/slack/events")
        assert (await harness.command("/alltoken-chat", "hello")).status == 200
        await harness.settle()
        assert len(harness.fake.bot_messages("C1")) == 1
        base = f"http://127.0.0.1:{harness.server.port}"
        async with harness.http.get(f"{base}/readyz") as resp:
            ready = await resp.json()
        assert resp.status == 200 and ready["checks"]["slack"] is True
        async with harness.http.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
        assert 'tokenbot_stream_edits_total{platform="slack"}' in metrics
    finally:
        await harness.aclose()
    assert "slack" not in harness.bot.readiness
