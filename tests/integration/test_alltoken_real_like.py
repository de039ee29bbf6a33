"""tokenbot against the AllToken simulator's real-like defaults (issue 10, "Real-service fidelity").

Each default is what the real gateway does (the seed's live-verified recipes, the official SDK's
generated models): an image read once and then gone (410 image_already_retrieved), the
r2_url-only re-read only behind the `r2_copy` switch, image-to-video refusing a prompt alone,
429s that carry Retry-After, and `usage: null` on streamed chunks.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from bot.core.app import TokenBot
from bot.core.messages import Destination, Failure, Image, Link, Notice
from bot.sim.alltoken.server import AllTokenSim, Fault
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
IMAGES = "/v1/images/generations"


def failures(chat: Chat) -> list[Failure]:
    return [p for e in chat.conv.events for p in e.parts if isinstance(p, Failure)]


async def _bot(data_dir: Path, sim: AllTokenSim) -> TokenBot:
    bot = await TokenBot.create(make_settings(data_dir, sim))
    convs: dict[str, RecordingConversation] = {}

    def factory(dest: Destination) -> RecordingConversation:
        return convs.setdefault(dest.conversation_key, RecordingConversation(dest))

    bot.register_platform("console", factory)
    bot.test_conversations = convs  # type: ignore[attr-defined]
    return bot


async def _consume_first_read(sim: AllTokenSim, key: str, task_id: str) -> None:
    """Read the completed image once, as a process that then died before saving it would."""
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as client:
        async with asyncio.timeout(10):
            while True:
                body = (await client.get(f"{IMAGES}/{task_id}")).json()
                if body["status"] == "completed":
                    assert body["data"][0]["b64_json"]
                    return
                await asyncio.sleep(0.05)


async def _resume_after_a_lost_first_read(tmp_path: Path, sim: AllTokenSim) -> Chat:
    """Start an image, stop tokenbot, let someone else take the one b64 read, restart."""
    sim.config.image_seconds = 0.5
    key = sim.issue_key(10)
    first = await _bot(tmp_path / "data", sim)
    chat = Chat(first, "alice")
    await chat.give_key(key)
    await chat.send("/alltoken-image a lighthouse at dusk")
    [job] = await first.store.jobs_for(chat.owner)
    task_id = ""
    async with asyncio.timeout(10):
        while not task_id:
            saved = await first.store.get_job(job.id)
            task_id = str(saved.state.get("task_id") or "") if saved else ""
            await asyncio.sleep(0.01)
    await first.aclose()  # stopped before the image was ready: it never read it
    await _consume_first_read(sim, key, task_id)

    second = await _bot(tmp_path / "data", sim)
    assert await second.start() == 1
    assert await second.jobs.wait_idle(10)
    return Chat(second, "alice")  # the conversation the resumed job wrote to


async def test_a_second_image_read_is_gone_by_default_and_said_so(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    assert sim.config.r2_copy is False  # the seed's live-verified behaviour is the default
    chat = await _resume_after_a_lost_first_read(tmp_path, sim)
    try:
        [failure] = failures(chat)
        assert failure.code == "image_already_retrieved"
        assert "only once" in (failure.hint or "") and "/alltoken-image" in (failure.hint or "")
        assert not chat.conv.of("upload")
        [job] = await chat.bot.store.jobs_for(chat.owner)
        assert job.status == "failed"
    finally:
        await chat.bot.aclose()


async def test_with_the_r2_switch_a_second_read_is_fetched_from_r2(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    sim.config.r2_copy = True  # the SDK's newer spec: later reads carry r2_url only
    chat = await _resume_after_a_lost_first_read(tmp_path, sim)
    try:
        assert not failures(chat)
        [upload] = chat.conv.of("upload")
        assert upload.image_bytes and upload.image_bytes.startswith(PNG_MAGIC)
        assert sum(sim.stats.r2_downloads.values()) == 1
        [job] = await chat.bot.store.jobs_for(chat.owner)
        assert job.status == "done"
    finally:
        await chat.bot.aclose()


async def test_an_image_without_an_r2_copy_is_delivered_once_with_no_link(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    """With no R2 copy there is no link to offer when the images folder refuses the file."""
    bot.settings.images_dir.write_text("a file where the images folder should be")
    await alice.send("/alltoken-image a calm sea")
    assert await bot.jobs.wait_idle(10)
    [upload] = alice.conv.of("upload")
    assert upload.image_bytes and upload.image_bytes.startswith(PNG_MAGIC)
    image = upload.parts[0]
    assert isinstance(image, Image) and image.fallback_url is None
    final = alice.conv.events[-1]
    assert any("could not save it" in p.text for p in final.parts if isinstance(p, Notice))
    assert not [p for p in final.parts if isinstance(p, Link)]
    assert list(sim.stats.b64_deliveries.values()) == [1]
    assert not sim.stats.errors  # tokenbot never re-read the image (no 410)


async def test_image_to_video_with_a_prompt_alone_is_refused_with_a_way_out(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    key = await bot.store.get_credential(alice.owner, "alltoken")
    before = sim.balance(key or "")
    await alice.send("/alltoken-video a horse gallops --model=happyhorse-1.0-i2v --duration=5")
    assert await bot.jobs.wait_idle(10)
    [failure] = failures(alice)
    assert failure.code == "upstream_invalid_parameter" and failure.request_id
    assert "happyhorse-1.0-t2v" in (failure.hint or "")
    [job] = await bot.store.jobs_for(alice.owner)
    assert job.status == "failed" and sim.balance(key or "") == before
    # The text-to-video sibling takes the same prompt.
    await alice.send("/alltoken-video a horse gallops --model=happyhorse-1.0-t2v --duration=5")
    assert await bot.jobs.wait_idle(10)
    assert [p for e in alice.conv.events for p in e.parts if isinstance(p, Link)]


async def test_a_429_without_an_explicit_wait_is_retried_after_its_retry_after(
    alice: Chat, sim: AllTokenSim
) -> None:
    stored = sim.add_fault(Fault(method="POST", path="/v1/chat/completions", status=429))
    await alice.send("/alltoken-chat hello there")
    assert stored.hits == 1
    assert not failures(alice)
    assert alice.conv.of("stream")[0].text


async def test_streamed_usage_is_null_until_the_last_chunk_and_still_counted(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    sent: list[bytes] = []

    async def record(request: httpx.Request) -> None:
        if request.url.path.endswith("/v1/chat/completions"):
            sent.append(request.content)

    bot.http.event_hooks["request"].append(record)
    await alice.send("/alltoken-chat [[tokens=12]] hello")
    [trailer] = alice.conv.of("stream")[0].parts
    assert isinstance(trailer, Notice) and "tokens" in trailer.text
    [usage] = await bot.store.list_usage(alice.owner)
    assert usage.completion_tokens == 12  # read from the one chunk whose usage is not null
    # The same request again, read here: usage is null (present) on all chunks but the last.
    [body] = sent
    key = await bot.store.get_credential(alice.owner, "alltoken")
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}) as client:
        resp = await client.post(f"{sim.base_url}/v1/chat/completions", content=body)
    lines = resp.text.splitlines()
    chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert all("usage" in c for c in chunks)
    assert all(c["usage"] is None for c in chunks[:-1])
    assert chunks[-1]["usage"]["completion_tokens"] == 12
