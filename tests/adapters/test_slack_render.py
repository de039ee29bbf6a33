"""The Slack adapter's pure parts: mrkdwn conversion, Block Kit rendering, modals, inbound mapping."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

from adapters.slack.inbound import command_inbound, is_user_post, message_inbound
from adapters.slack.modals import (
    FORM_CALLBACK,
    decode_metadata,
    encode_metadata,
    form_view,
    submitted_values,
)
from adapters.slack.mrkdwn import from_slack, strip_mention, to_mrkdwn
from adapters.slack.platform import SlackIdentity
from adapters.slack.render import (
    LINK_ACTION,
    blocks_for,
    fallback_text,
    markdown_of,
    render_messages,
    slack_date,
    trailer_blocks,
)
from bot.core.messages import (
    Actions,
    Button,
    Destination,
    Failure,
    Fields,
    FormField,
    FormRequest,
    Link,
    Notice,
    Text,
)
from bot.core.text_split import open_fence

IDENTITY = SlackIdentity(team_id="T1", bot_user_id="UBOT", bot_id="BBOT")


def test_mrkdwn_bold_italic_and_code() -> None:
    assert to_mrkdwn("**bold** and *it* and __also__") == "*bold* and _it_ and *also*"
    # Code is verbatim: no bold conversion inside it, only Slack's escapes.
    assert to_mrkdwn("run `a **b** < c` now") == "run `a **b** &lt; c` now"
    fenced = to_mrkdwn("```python\nif a < b and **c**:\n    pass\n```\nthen **done**")
    assert fenced == "```\nif a &lt; b and **c**:\n    pass\n```\nthen *done*"


def test_mrkdwn_links_headings_lists_and_escapes() -> None:
    # Slack decodes `&amp;` inside a link target too (its three escapes apply everywhere).
    assert to_mrkdwn("[docs](https://x.dev/a?b=1&c=2)") == "<https://x.dev/a?b=1&amp;c=2|docs>"
    assert to_mrkdwn("# Title\n- one\n* two") == "*Title*\n• one\n• two"
    assert to_mrkdwn("a & b <c> ~~d~~") == "a &amp; b &lt;c&gt; ~d~"
    assert to_mrkdwn("2 * 3 * 4") == "2 * 3 * 4"


def test_text_is_a_markdown_block_with_a_mrkdwn_fallback() -> None:
    [message] = render_messages([Text(markdown="**Tides** use `moon()`")])
    assert message.blocks == [{"type": "markdown", "text": "**Tides** use `moon()`"}]
    assert message.text == "*Tides* use `moon()`"


def test_fields_become_section_fields() -> None:
    rows = [(f"label {i}", f"`v{i}`") for i in range(12)]
    blocks = blocks_for(Fields(title="AllToken cost", rows=rows))
    assert blocks[0]["text"]["text"] == "*AllToken cost*"
    assert [len(b["fields"]) for b in blocks[1:]] == [10, 2]  # Slack allows 10 per section
    assert blocks[1]["fields"][0] == {"type": "mrkdwn", "text": "*label 0*\n`v0`"}


def test_failure_shows_code_message_request_id_and_hint() -> None:
    part = Failure(
        code="insufficient_balance",
        message="Your **balance** is $0.",
        request_id="req_123",
        hint="Top up at alltoken.ai, then retry.",
    )
    text = json.dumps(blocks_for(part))
    assert "*insufficient_balance*" in text and "Your *balance* is $0." in text
    assert "`req_123`" in text and "Top up at alltoken.ai" in text
    assert "req_123" in fallback_text([part])


def test_link_with_expiry_is_a_slack_date() -> None:
    expires = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    blocks = blocks_for(
        Link(url="https://cdn.example/v.mp4?sig=a&x=1", label="Download", expires_at=expires)
    )
    assert "<https://cdn.example/v.mp4?sig=a&amp;x=1|Download>" in blocks[0]["text"]["text"]
    assert blocks[0]["accessory"]["url"].startswith("https://cdn.example/v.mp4")
    assert blocks[0]["accessory"]["action_id"] == LINK_ACTION
    epoch = int(expires.timestamp())
    assert slack_date(expires) == (
        f"<!date^{epoch}^{{date_short_pretty}} {{time}}|2026-11-21 10:00 UTC>"
    )
    assert slack_date(expires) in blocks[1]["elements"][0]["text"]


def test_notice_and_actions() -> None:
    [notice] = blocks_for(Notice(level="warning", text="Video _queued_"))
    assert notice["text"]["text"] == "⚠️ Video _queued_"
    [actions] = blocks_for(
        Actions(
            buttons=[
                Button(
                    action_id="alltoken.video.cancel", label="Cancel", value="j1", style="danger"
                ),
                Button(action_id="x", label="More"),
            ]
        )
    )
    cancel, more = actions["elements"]
    assert cancel == {
        "type": "button",
        "action_id": "alltoken.video.cancel",
        "text": {"type": "plain_text", "text": "Cancel", "emoji": True},
        "value": "j1",
        "style": "danger",
    }
    assert "style" not in more


def test_trailer_is_a_context_line_and_markdown_of_keeps_markdown() -> None:
    usage = Notice(level="info", text="`gpt-5.4-mini` · 31 tokens · $0.0001")
    [block] = trailer_blocks([usage])
    assert block["type"] == "context" and "`gpt-5.4-mini`" in block["elements"][0]["text"]
    assert markdown_of([usage]) == "ℹ️ `gpt-5.4-mini` · 31 tokens · $0.0001"


def test_long_text_is_split_into_messages_without_breaking_fences() -> None:
    code = "```python\n" + "\n".join(f"x{i} = {i}" for i in range(3000)) + "\n```"
    messages = render_messages([Text(markdown="intro\n\n" + code), Notice(text="done")])
    assert len(messages) > 1
    for message in messages:
        chunks = [b["text"] for b in message.blocks if b["type"] == "markdown"]
        assert sum(len(c) for c in chunks) <= 11_000
        for chunk in chunks:
            assert open_fence(chunk) is None  # every chunk closes what it opens
    assert "done" in json.dumps(messages[-1].blocks)


def test_modal_for_a_secret_field_and_its_submission() -> None:
    dest = Destination(
        platform="slack",
        workspace="T1",
        channel="C1",
        user="U1",
        extras={"team": "T1", "response_url": "https://hooks/x", "trigger_id": "t1"},
    )
    request = FormRequest(
        form_id="key.alltoken",
        title="AllToken key",
        intro="Stored **encrypted**.",
        fields=[FormField(name="key", label="Your AllToken API key", placeholder="sk-at-…")],
    )
    view = form_view(request, dest)
    assert view["callback_id"] == FORM_CALLBACK and view["type"] == "modal"
    assert "Only you see what you type" in view["blocks"][0]["text"]["text"]
    [field] = [b for b in view["blocks"] if b["type"] == "input"]
    assert field["block_id"] == "key" and field["element"]["type"] == "plain_text_input"
    meta = decode_metadata(view["private_metadata"])
    assert meta["form"] == "key.alltoken" and meta["channel"] == "C1"
    assert "trigger_id" not in meta["extras"]  # only what the answer needs
    state = {"values": {"key": {"value": {"type": "plain_text_input", "value": "sk-at-x"}}}}
    assert submitted_values({**view, "state": state}) == {"key": "sk-at-x"}
    assert decode_metadata("not json") == {} and decode_metadata('{"x": 1}') == {}
    long = dest.model_copy(update={"extras": {"response_url": "h" * 4000}})
    assert len(encode_metadata("f", long)) <= 3000


def test_inbound_mapping() -> None:
    inbound, extras = command_inbound(
        {
            "team_id": "T1",
            "channel_id": "D42",
            "channel_name": "directmessage",
            "user_id": "U1",
            "command": "/alltoken-chat",
            "text": "hello",
            "response_url": "https://hooks/1",
            "trigger_id": "trig",
        }
    )
    assert inbound.command == "/alltoken-chat" and inbound.is_direct and inbound.text == "hello"
    assert extras["response_url"] == "https://hooks/1" and extras["trigger_id"] == "trig"
    event = {
        "type": "app_mention",
        "channel": "C1",
        "user": "U1",
        "ts": "1.2",
        "thread_ts": "1.1",
        "text": "<@UBOT> alltoken chat a &lt; b, see <https://x.dev|x.dev> in <#C9|random>",
    }
    msg, extras = message_inbound(event, "T1", IDENTITY)
    assert msg.text == "alltoken chat a < b, see https://x.dev in #random"
    assert msg.thread == "1.1" and msg.message_id == "1.2" and not msg.is_direct
    assert extras["team"] == "T1"
    top, _ = message_inbound({**event, "thread_ts": None}, "T1", IDENTITY)
    assert top.thread == "1.2"  # the bot answers in a thread under the message
    assert strip_mention("<@UBOT>: hi <@U2>", "UBOT") == "hi <@U2>"
    assert from_slack("&amp;&lt;&gt;") == "&<>"
    assert is_user_post({"user": "U1", "text": "x"}, IDENTITY)
    assert not is_user_post({"user": "U1", "subtype": "message_changed"}, IDENTITY)
    assert not is_user_post({"user": "UBOT", "text": "x"}, IDENTITY)
    assert not is_user_post({"user": "U9", "bot_id": "B9", "text": "x"}, IDENTITY)


MANIFEST = Path(__file__).parents[2] / "config" / "slack-app-manifest.yaml"
SLACK_SOURCE = Path(__file__).parents[2] / "adapters" / "slack"

# Web API methods the Slack adapter calls (by their AsyncWebClient name) -> the bot scopes
# each needs as tokenbot uses it (api.slack.com/methods). A call missing here fails the test.
METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    # chat:write.public: slash-command replies in public channels the bot hasn't joined.
    "chat_postMessage": ("chat:write", "chat:write.public"),
    "chat_postEphemeral": ("chat:write",),
    "chat_update": ("chat:write",),
    # AsyncChatStream: chat.startStream + chat.appendStream + chat.stopStream.
    "chat_stream": ("chat:write",),
    # files.getUploadURLExternal + files.completeUploadExternal.
    "files_upload_v2": ("files:write",),
    "conversations_open": ("im:write",),
    # Thread context in every kind of conversation the bot listens in.
    "conversations_replies": ("channels:history", "groups:history", "im:history"),
    "views_open": (),
    "auth_test": (),
    # The assistant thread (adapters/slack/assistant.py) and the Home tab (app_home.py).
    "assistant_threads_setStatus": ("assistant:write",),
    "assistant_threads_setSuggestedPrompts": ("assistant:write",),
    "assistant_threads_setTitle": ("assistant:write",),
    # "Summarize this channel": the channel the person has open, public or private.
    "conversations_history": ("channels:history", "groups:history"),
    "views_publish": (),
}
# Events the manifest subscribes to -> the scope each needs; slash commands need `commands`.
EVENT_SCOPES = {
    "app_mention": "app_mentions:read",
    "message.channels": "channels:history",
    "message.groups": "groups:history",
    "message.im": "im:history",
    "app_home_opened": "",  # needs no scope
    "assistant_thread_started": "assistant:write",
    "assistant_thread_context_changed": "assistant:write",
}


def _manifest_list(text: str, header: str) -> list[str]:
    """The `- item` entries right under the line `header:` (this YAML needs no parser)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"{header}:")
    items: list[str] = []
    for line in lines[start + 1 :]:
        if line.lstrip().startswith("#"):
            continue
        m = re.match(r"\s+- ([\w:.]+)", line)
        if not m:
            break
        items.append(m.group(1))
    return items


def _web_api_calls() -> set[str]:
    """Every AsyncWebClient method the Slack adapter's source calls."""
    from slack_sdk.web.async_client import AsyncWebClient

    api = {name for name in vars(AsyncWebClient) if not name.startswith("_")}
    calls: set[str] = set()
    for path in SLACK_SOURCE.glob("*.py"):
        calls |= set(re.findall(r"\.([a-z]+_[A-Za-z0-9_]+)\(", path.read_text())) & api
    return calls


def test_manifest_declares_every_command_and_event() -> None:
    from bot.core.app import default_families

    manifest = MANIFEST.read_text()
    names = [n for f in default_families() for n in f.slash_commands]
    for name in [*names, "/openmarlin", "/openclaw-token"]:
        assert f"- command: {name}\n" in manifest, name
    assert set(_manifest_list(manifest, "bot_events")) == set(EVENT_SCOPES)
    app_source = (SLACK_SOURCE / "app.py").read_text()
    assert '@app.event("app_mention")' in app_source and '@app.event("message")' in app_source
    assert "socket_mode_enabled: true" in manifest and "is_enabled: true" in manifest


def test_every_web_api_call_has_its_scopes_in_the_manifest() -> None:
    scopes = set(_manifest_list(MANIFEST.read_text(), "bot"))
    calls = _web_api_calls()
    assert "chat_postMessage" in calls and "files_upload_v2" in calls  # the scan finds calls
    assert calls == set(METHOD_SCOPES), "update METHOD_SCOPES for the methods the adapter calls"
    for method in sorted(calls):
        missing = set(METHOD_SCOPES[method]) - scopes
        assert not missing, f"{method} needs {missing}"


def test_every_manifest_scope_is_used() -> None:
    manifest = MANIFEST.read_text()
    scopes = _manifest_list(manifest, "bot")
    assert len(scopes) == len(set(scopes)) and "commands" in scopes
    events = _manifest_list(manifest, "bot_events")
    needed = {s for m in _web_api_calls() for s in METHOD_SCOPES.get(m, ())}
    needed |= {EVENT_SCOPES[e] for e in events} | {"commands"}  # slash commands
    unused = set(scopes) - needed
    assert not unused, f"the manifest requests scopes nothing uses: {sorted(unused)}"


def test_recent_keys_and_token_bucket() -> None:
    from adapters.slack.limits import LruCounter, RecentKeys, TokenBucket

    now = [0.0]
    seen = RecentKeys(capacity=2, ttl_s=10, clock=lambda: now[0])
    assert seen.first_time("a") and not seen.first_time("a")
    assert seen.first_time("b") and seen.first_time("c")  # "a" is pushed out (capacity)
    assert seen.first_time("a")
    now[0] = 11
    assert seen.first_time("c")  # expired
    bucket = TokenBucket(rate_per_s=1, burst=2, clock=lambda: now[0])
    assert bucket.try_take(2) and not bucket.try_take()
    now[0] += 1
    assert bucket.try_take() and not bucket.try_take()
    uses = LruCounter(capacity=1)
    assert uses.add("u") == 1 and uses.add("u") == 2 and uses.get("v") == 0
    uses.add("v")
    assert uses.get("u") == 0  # forgotten
