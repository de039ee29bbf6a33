"""`File` parts (a report's chart and CSV) are uploaded by each adapter, privately when whispered.

Slack: files upload v2 into the channel, or (whispered) the person's DM with the bot, since a
file can't be ephemeral. Discord: an attachment, ephemeral when whispered during an interaction.
Console: saved under the output folder, the path printed.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from adapters.console.conversation import ConsoleConversation, ConsolePrinter
from adapters.slack.conversation import SlackConversation
from bot.core.command_spec import CommandSpec, OptionValue
from bot.core.context import HandlerContext
from bot.core.family import CommandFamily
from bot.core.grammar import ParseState
from bot.core.messages import Destination, File, Part, Text
from bot.sim.alltoken.server import AllTokenSim
from tests.fakes.discord import EPHEMERAL, LOADING, DiscordWorld, discord_world
from tests.fakes.slack import TEAM, SlackHarness

PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 50
CSV = b"time_utc,user\r\n2026-12-02T10:00:00Z,U1\r\n"


def report_parts(folder: Path) -> list[Part]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a1.png").write_bytes(PNG)
    (folder / "a1.csv").write_bytes(CSV)
    return [
        Text(markdown="**Your spend** $1.00"),
        File(path=folder / "a1.png", mime="image/png", name="tokenbot-usage-day.png"),
        File(path=folder / "a1.csv", mime="text/csv", name="tokenbot-usage-day.csv"),
    ]


# --- Slack ---------------------------------------------------------------------------------


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    try:
        yield harness
    finally:
        await harness.aclose()


def slack_conversation(slack: SlackHarness, thread: str | None = None) -> SlackConversation:
    dest = Destination(
        platform="slack",
        workspace=TEAM,
        channel="C1",
        user="U1",
        thread=thread,
        extras={"team": TEAM},
    )
    conv = slack.bot.conversation_for(dest)
    assert isinstance(conv, SlackConversation)
    return conv


async def test_slack_whispered_files_go_to_the_dm_and_the_ephemeral_says_so(
    slack: SlackHarness, tmp_path: Path
) -> None:
    await slack_conversation(slack).whisper(report_parts(tmp_path / "reports"))
    fake = slack.fake
    [ephemeral] = fake.calls_to("chat.postEphemeral")
    assert "Your spend" in str(ephemeral.args["text"])
    assert "tokenbot-usage-day.png, tokenbot-usage-day.csv" in str(ephemeral.args["text"])
    assert "sent to your DM" in str(ephemeral.args["text"])
    uploads = fake.calls_to("files.getUploadURLExternal")
    assert [c.args["filename"] for c in uploads] == [
        "tokenbot-usage-day.png",
        "tokenbot-usage-day.csv",
    ]
    assert sorted(fake.uploads.values()) == sorted([PNG, CSV])
    completed = fake.calls_to("files.completeUploadExternal")
    assert [c.args["channel_id"] for c in completed] == ["DU1", "DU1"]  # never the channel
    assert fake.calls_to("chat.postMessage") == []


async def test_slack_said_files_are_uploaded_into_the_thread(
    slack: SlackHarness, tmp_path: Path
) -> None:
    thread = "1700000000.000001"
    ref = await slack_conversation(slack, thread).say(report_parts(tmp_path / "reports"))
    fake = slack.fake
    [post] = fake.calls_to("chat.postMessage")
    assert ref.channel == "C1" and ref.extras.get("kind") != "file"  # the message, not a file
    assert post.args["thread_ts"] == thread
    completed = fake.calls_to("files.completeUploadExternal")
    assert [(c.args["channel_id"], c.args.get("thread_ts")) for c in completed] == [
        ("C1", thread),
        ("C1", thread),
    ]
    assert set(fake.uploads.values()) == {PNG, CSV}


# --- Discord -------------------------------------------------------------------------------


class FileCommand(BaseModel):
    kind: Literal["file-test"] = "file-test"
    private: bool


def file_family(folder: Path) -> CommandFamily:
    """`/filetest private` whispers a report with two files; `/filetest` says it."""

    def parse(text: str, ctx: ParseState) -> BaseModel | None:
        return None

    def parse_slash(command: str, text: str, ctx: ParseState) -> BaseModel | None:
        if command.lstrip("/") != "filetest":
            return None
        return FileCommand(private=text.strip() == "private")

    def parse_options(
        spec: CommandSpec, values: Mapping[str, OptionValue], ctx: ParseState
    ) -> BaseModel | None:
        return None

    async def handle(cmd: FileCommand, ctx: HandlerContext) -> None:
        parts = report_parts(folder)
        if cmd.private:
            await ctx.conversation.whisper(parts)
        else:
            await ctx.conversation.say(parts)

    return CommandFamily(
        name="filetest",
        display_name="Filetest",
        parse=parse,
        parse_slash=parse_slash,
        slash_commands=("/filetest",),
        handlers={FileCommand: handle},
        parse_options=parse_options,
    )


@pytest.fixture
async def world(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[DiscordWorld]:
    families = [file_family(tmp_path / "reports")]
    async with discord_world(sim, tmp_path / "data", families=families) as w:
        yield w


def attachments(message: dict[str, Any]) -> list[str]:
    return [a["filename"] for a in message.get("attachments") or []]


async def test_discord_whispered_files_are_ephemeral_attachments(world: DiscordWorld) -> None:
    fake = world.fake
    i = await fake.slash("filetest", text="private")
    replies = await fake.wait_until(
        lambda: (r := fake.replies(i)) and sum(len(attachments(m)) for m in r) == 2 and r,
        10,
        what="the two attachments",
    )
    assert any("Your spend" in m["content"] for m in replies)
    files = [name for m in replies for name in attachments(m)]
    assert files == ["tokenbot-usage-day.png", "tokenbot-usage-day.csv"]
    for message in replies:
        if attachments(message) or "Your spend" in message["content"]:
            assert int(message["flags"]) & EPHEMERAL, message
            assert not int(message["flags"]) & LOADING
    uploaded = sorted(f.data for c in fake.calls for f in c.files)
    assert uploaded == sorted([PNG, CSV])
    # Nothing public: everything in the channel is ephemeral (the fake keeps those there too).
    assert all(int(m["flags"]) & EPHEMERAL for m in fake.messages_in(fake.channel_id))


async def test_discord_files_without_an_interaction_are_attached_in_the_channel_or_dm(
    world: DiscordWorld, tmp_path: Path
) -> None:
    fake = world.fake
    dest = Destination(
        platform="discord",
        workspace=str(fake.guild_id),
        channel=str(fake.channel_id),
        user=fake.alice["id"],
    )
    conversation = world.bot.conversation_for(dest)
    await conversation.say(report_parts(tmp_path / "public"))
    posted = fake.messages_in(fake.channel_id)
    assert [name for m in posted for name in attachments(m)] == [
        "tokenbot-usage-day.png",
        "tokenbot-usage-day.csv",
    ]
    await conversation.whisper(report_parts(tmp_path / "private"))
    dm = fake.dm_channels[int(fake.alice["id"])]
    in_dm = fake.messages_in(dm)
    assert [name for m in in_dm for name in attachments(m)] == [
        "tokenbot-usage-day.png",
        "tokenbot-usage-day.csv",
    ]
    assert "Your spend" in json.dumps(in_dm)
    assert len(fake.messages_in(fake.channel_id)) == len(posted)  # the whisper stayed private


async def test_discord_a_file_over_the_upload_limit_is_named_not_sent(
    world: DiscordWorld, tmp_path: Path
) -> None:
    fake = world.fake
    dest = Destination(
        platform="discord",
        workspace=str(fake.guild_id),
        channel=str(fake.channel_id),
        user=fake.alice["id"],
        extras={"upload_limit": "100"},
    )
    conversation = world.bot.conversation_for(dest)
    await conversation.say(report_parts(tmp_path / "big"))
    posted = fake.messages_in(fake.channel_id)
    assert [name for m in posted for name in attachments(m)] == ["tokenbot-usage-day.csv"]
    assert any("tokenbot-usage-day.png is" in m["content"] for m in posted)


# --- console -------------------------------------------------------------------------------


async def test_console_saves_files_under_the_output_folder_and_prints_the_paths(
    tmp_path: Path,
) -> None:
    out = io.StringIO()
    destination = Destination(platform="console", workspace="c", channel="c", user="u")
    out_dir = tmp_path / "tokenbot-out"
    conversation = ConsoleConversation(destination, ConsolePrinter(out), out_dir)
    await conversation.whisper(report_parts(tmp_path / "reports"))
    await conversation.say(report_parts(tmp_path / "reports"))  # the same names again
    assert (out_dir / "tokenbot-usage-day.png").read_bytes() == PNG
    assert (out_dir / "tokenbot-usage-day.csv").read_bytes() == CSV
    assert (out_dir / "tokenbot-usage-day-2.png").read_bytes() == PNG  # never overwritten
    printed = out.getvalue()
    assert printed.count("Your spend") == 2
    assert f"📎 saved {out_dir / 'tokenbot-usage-day.png'} ({len(PNG):,} bytes)" in printed
    assert "File(" not in printed  # the part itself is never printed


async def test_console_a_hostile_file_name_stays_inside_the_output_folder(tmp_path: Path) -> None:
    out = io.StringIO()
    source = tmp_path / "x.csv"
    source.write_bytes(CSV)
    destination = Destination(platform="console", workspace="c", channel="c", user="u")
    out_dir = tmp_path / "tokenbot-out"
    conversation = ConsoleConversation(destination, ConsolePrinter(out), out_dir)
    await conversation.whisper(
        [File(path=source, name="../../etc/\x1b[31mpasswd", mime="text/csv")]
    )
    [saved] = list(out_dir.iterdir())
    assert saved.name == "passwd" and saved.read_bytes() == CSV
    assert "\x1b" not in out.getvalue()
