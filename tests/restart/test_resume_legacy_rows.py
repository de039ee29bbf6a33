"""Job rows exactly as tokenbot wrote them before job states were typed still resume.

Each state below is built literally, key by key, the way the untyped code wrote it (the
handlers' dicts plus the keys each job saved along the way, no `version`), and put into a real
SQLite store; a new process must finish the job from there, and write the row back upgraded.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from bot.core.app import TokenBot
from bot.core.job_context import JobContext
from bot.core.job_state import NoState
from bot.core.job_triage import NEWER_REPLICA_WAIT_S
from bot.core.messages import Failure, Image, Link, Text
from bot.sim.alltoken.server import AllTokenSim
from bot.store import JobRecord
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A small valid PNG (1x1, transparent).
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


async def _bot(tmp_path: Path, sim: AllTokenSim) -> tuple[TokenBot, RecordingConversation]:
    b = await TokenBot.create(make_settings(tmp_path / "data", sim))
    convs: dict[str, RecordingConversation] = {}
    b.register_platform(
        "console", lambda d: convs.setdefault(d.conversation_key, RecordingConversation(d))
    )
    b.test_conversations = convs  # type: ignore[attr-defined]
    chat = Chat(b, "alice")
    return b, chat.conv


async def _insert(bot: TokenBot, chat: Chat, state: dict[str, Any], kind: str, status: str) -> str:
    job_id = uuid.uuid4().hex[:16]
    await bot.store.create_job(
        JobRecord(
            id=job_id,
            kind=kind,
            owner=chat.owner,
            destination=chat.inbound_proto.destination(),
            state=state,
            status=status,
        )
    )
    return job_id


async def _ends(bot: TokenBot, chat: Chat, command: str) -> list[tuple[str, str | None]]:
    """How the jobs of `command` ended, as audited (the app audits their start as `started`)."""
    return [
        (e.outcome, e.request_id)
        for e in await bot.store.list_audit(chat.owner)
        if e.command == command and e.outcome != "started"
    ]


async def test_an_image_row_written_by_the_image_handler_resumes(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    bot, _ = await _bot(tmp_path, sim)
    try:
        chat = Chat(bot, "alice")
        await chat.give_key(sim.issue_key(10))
        legacy = {  # what handlers.image() passed to jobs.start
            "prompt": "a lighthouse at dusk",
            "model": "gpt-image-2",
            "size": "1024x1024",
            "quality": "low",
            "idempotency_key": str(uuid.uuid4()),
            "conversation_key": chat.inbound_proto.conversation_key,
        }
        job_id = await _insert(bot, chat, legacy, "image", "pending")
        assert await bot.start() == 1
        assert await bot.jobs.wait_idle(10)
        [upload] = chat.conv.of("upload")
        assert upload.image_bytes and upload.image_bytes.startswith(PNG_MAGIC)
        job = await bot.store.get_job(job_id)
        assert job is not None and job.status == "done" and job.state["version"] == 1
        assert job.state["idempotency_key"] == legacy["idempotency_key"]
        assert await _ends(bot, chat, "image") == [("ok", job.state["task_id"])]
    finally:
        await bot.aclose()


async def test_an_image_row_whose_bytes_were_saved_resumes_from_disk(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    bot, _ = await _bot(tmp_path, sim)
    try:
        chat = Chat(bot, "alice")
        await chat.give_key(sim.issue_key(10))
        saved = bot.settings.images_dir / "legacy.png"
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_bytes(PNG)
        legacy = {  # the handler's keys, then what the job saved up to keeping the bytes
            "prompt": "a red kite",
            "model": "gpt-image-2",
            "size": "1024x1024",
            "quality": "low",
            "idempotency_key": "6c1f3d0e-legacy",
            "conversation_key": chat.inbound_proto.conversation_key,
            "progress_ref": {"platform": "console", "channel": "general", "id": "1", "extras": {}},
            "task_id": "igen_legacy_1",
            "file": str(saved),
            "mime": "image/png",
            "r2_url": None,
            "r2_expires_at": None,
            "usage": {"input_tokens": 12, "output_tokens": 0, "total_tokens": 12},
            "revised_prompt": None,
        }
        job_id = await _insert(bot, chat, legacy, "image", "running")
        assert await bot.start() == 1
        assert await bot.jobs.wait_idle(10)
        [upload] = chat.conv.of("upload")
        assert upload.image_bytes == PNG
        image = upload.parts[0]
        assert isinstance(image, Image) and image.alt == "a red kite"
        assert "12 tokens" in chat.conv.events[-1].text
        assert [e.ref for e in chat.conv.of("edit")] == ["1"]  # the old progress message
        job = await bot.store.get_job(job_id)
        assert job is not None and job.status == "done" and job.state["uploaded"] is True
        assert not saved.exists() and not sim.stats.image_submissions  # nothing asked again
        assert await _ends(bot, chat, "image") == [("ok", "igen_legacy_1")]
    finally:
        await bot.aclose()


async def test_a_video_row_with_its_task_id_resumes(tmp_path: Path, sim: AllTokenSim) -> None:
    sim.config.video_seconds = 0.5
    first, _ = await _bot(tmp_path, sim)
    chat = Chat(first, "alice")
    await chat.give_key(sim.issue_key(10))
    await chat.send("/alltoken-video a pier at night")
    [job] = await first.store.jobs_for(chat.owner)
    async with asyncio.timeout(10):
        while not (current := await first.store.get_job(job.id)) or not current.state.get(
            "task_id"
        ):
            await asyncio.sleep(0.01)
    await first.aclose()
    task_id = str(current.state["task_id"])
    legacy = {  # handlers.video()'s keys, then what the job saved before its first poll
        "prompt": "a pier at night",
        "model": "seedance-1.5-pro",
        "duration": 5,
        "ratio": "16:9",
        "resolution": "480p",
        "conversation_key": chat.inbound_proto.conversation_key,
        "progress_ref": current.state["progress_ref"],
        "submit_started": True,
        "task_id": task_id,
    }
    with sqlite3.connect(tmp_path / "data" / "tokenbot.db") as raw:
        raw.execute("UPDATE jobs SET state = ? WHERE id = ?", (json.dumps(legacy), job.id))

    second, conv = await _bot(tmp_path, sim)
    try:
        assert await second.start() == 1
        assert await second.jobs.wait_idle(10)
        [link] = [p for e in conv.events for p in e.parts if isinstance(p, Link)]
        assert link.url and link.expires_at is not None
        done = await second.store.get_job(job.id)
        assert done is not None and done.status == "done" and done.state["version"] == 1
        assert sim.stats.video_submissions == 1  # adopted by its saved id, never resent
        assert await _ends(second, Chat(second, "alice"), "video") == [("ok", task_id)]
    finally:
        await second.aclose()


async def test_a_row_with_a_renamed_key_or_a_newer_version_is_quarantined(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    # Either could be the next release's (a field it added, a version it wrote): the rows are
    # left for a replica of that release first, and quarantined once none took them.
    bot, _ = await _bot(tmp_path, sim)
    try:
        chat = Chat(bot, "alice")
        await chat.give_key(sim.issue_key(10))
        video = {
            "prompt": "p",
            "model": "seedance-1.5-pro",
            "duration": 5,
            "ratio": "16:9",
            "resolution": "480p",
        }
        renamed = await _insert(bot, chat, {**video, "taskId": "vid_1"}, "video", "running")
        newer = await _insert(bot, chat, {**video, "version": 7}, "video", "running")
        assert await bot.start() == 0
        rows = {j.id: j for j in await bot.store.jobs_for(chat.owner)}
        assert rows[renamed].status == rows[newer].status == "running"
        assert not [e for e in chat.conv.events if "could not resume" in e.text]
        assert await bot.jobs.claim_available(time.time() + NEWER_REPLICA_WAIT_S) == (0, 0)
        rows = {j.id: j for j in await bot.store.jobs_for(chat.owner)}
        assert rows[renamed].status == rows[newer].status == "quarantined"
        assert "taskId: Extra inputs are not permitted" in (rows[renamed].error or "")
        assert "state version 7 is newer" in (rows[newer].error or "")
        assert "no newer replica took it in 10 min" in (rows[newer].error or "")
        told = [e for e in chat.conv.events if "could not resume your video job" in e.text]
        assert len(told) == 2
    finally:
        await bot.aclose()


class _NextReleaseJob:
    """A job kind only the next release has: it says so and is done."""

    kind = "next_release"
    state_model = NoState

    async def run(self, ctx: JobContext[NoState]) -> None:
        await ctx.conversation.say([Text(markdown="run by the next release")])
        await ctx.set_status("done")

    async def report_failure(self, ctx: JobContext[NoState], failure: Failure) -> None:
        await ctx.conversation.say([failure])


async def test_a_job_of_a_kind_only_a_newer_replica_has_is_left_to_it(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    # A rolling deploy: the next release's replica started the job and died; this replica
    # (of the release before) leaves the row instead of quarantining it, and the next
    # release's replica — standing in here: the same runner once the kind is registered —
    # takes it over and finishes it.
    bot, _ = await _bot(tmp_path, sim)
    try:
        chat = Chat(bot, "alice")
        job_id = await _insert(bot, chat, {}, "next_release", "running")
        assert await bot.start() == 0
        assert await bot.jobs.claim_available(time.time() + 60) == (0, 0)
        row = await bot.store.get_job(job_id)
        assert row is not None and row.status == "running", row
        bot.jobs.register(_NextReleaseJob())
        assert await bot.jobs.claim_available(time.time() + 120) == (1, 0)
        assert await bot.jobs.wait_idle(10)
        row = await bot.store.get_job(job_id)
        assert row is not None and row.status == "done", row
        assert "run by the next release" in chat.conv.text()
        assert not [e for e in chat.conv.events if "could not resume" in e.text]
    finally:
        await bot.aclose()
