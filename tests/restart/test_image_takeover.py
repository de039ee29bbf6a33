"""An AllToken image whose replica died after reading it is delivered by another replica.

Two TokenBots share one store (SQLite file or PostgreSQL database) but not a disk: each has
its own data dir, and the first one's is deleted when it "dies". The image's bytes, read from
AllToken only once, must reach the second one through the store.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.core.app import TokenBot
from bot.sim.alltoken.server import AllTokenSim
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(params=("sqlite", "postgresql"))
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared' / 'tokenbot.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


class Replicas:
    """TokenBots on one store, each with its own data dir and conversations."""

    def __init__(self, tmp_path: Path, sim: AllTokenSim, store_url: str) -> None:
        self.tmp_path, self.sim, self.store_url = tmp_path, sim, store_url
        self.master_key = "one passphrase for every replica"
        self.bots: list[TokenBot] = []

    async def open(self, name: str) -> tuple[TokenBot, dict[str, RecordingConversation]]:
        settings = make_settings(
            self.tmp_path / name,
            self.sim,
            database_url=self.store_url,
            master_key=self.master_key,
            replica_id=name,
        )
        bot = await TokenBot.create(settings)
        convs: dict[str, RecordingConversation] = {}
        bot.register_platform(
            "console", lambda d: convs.setdefault(d.conversation_key, RecordingConversation(d))
        )
        bot.test_conversations = convs  # type: ignore[attr-defined]
        self.bots.append(bot)
        return bot, convs


@pytest.fixture
async def replicas(tmp_path: Path, sim: AllTokenSim, store_url: str) -> AsyncIterator[Replicas]:
    r = Replicas(tmp_path, sim, store_url)
    try:
        yield r
    finally:
        for bot in r.bots:
            await bot.aclose()


def _crash(bot: TokenBot) -> None:
    """What SIGKILL leaves: no more renewals, no release of the job's claim."""
    keeper = bot.jobs.lease_keeper._task
    if keeper is not None:
        keeper.cancel()
    bot.jobs.stop_all_local()


def _past_the_grace(bot: TokenBot) -> None:
    """Move `bot`'s clock past other replicas' leases and the takeover grace after them."""
    past_grace = bot.jobs.leases.lease_s + bot.jobs.leases.takeover_grace_s + 1
    bot.jobs.clock = lambda: time.time() + past_grace


async def _takes_over_and_posts_the_image(
    bot: TokenBot, convs: dict[str, RecordingConversation]
) -> None:
    """`bot` takes the one job over and posts its image (a real PNG), once."""
    _past_the_grace(bot)
    assert await bot.jobs.renew_and_take_over() == 1
    assert await bot.jobs.wait_idle(10)
    [conv] = convs.values()
    [upload] = conv.of("upload")
    assert upload.image_bytes and upload.image_bytes.startswith(PNG_MAGIC)


async def test_the_image_bytes_survive_a_takeover_by_a_replica_without_the_file(
    replicas: Replicas, sim: AllTokenSim
) -> None:
    a, _ = await replicas.open("a")
    chat = Chat(a, "alice")
    chat.conv.fail_uploads = 100  # a never manages to post it
    await chat.give_key(sim.issue_key(10))
    await chat.send("/alltoken-image a lighthouse")
    [job] = await a.store.jobs_for(chat.owner)
    async with asyncio.timeout(10):
        while not (await a.store.get_job(job.id) or job).state.get("file"):
            await asyncio.sleep(0.01)
    _crash(a)
    await asyncio.gather(*a.jobs._tasks.values(), return_exceptions=True)
    shutil.rmtree(replicas.tmp_path / "a" / "images")  # a's disk went with it
    assert list(sim.stats.b64_deliveries.values()) == [1]

    b, convs_b = await replicas.open("b")
    assert await b.jobs.renew_and_take_over() == 0  # a's lease still runs
    await _takes_over_and_posts_the_image(b, convs_b)
    assert list(sim.stats.b64_deliveries.values()) == [1]  # never read from AllToken again
    done = await b.store.get_job(job.id)
    assert done is not None and done.status == "done" and done.claimed_by == "b"
    assert await b.store.job_media(job.id) is None  # delivered: the store's copy is dropped
    assert not chat.conv.of("upload")


async def test_an_image_being_read_when_its_job_is_stopped_is_kept_for_the_next_holder(
    replicas: Replicas, sim: AllTokenSim
) -> None:
    """The read that hands the bytes out is in flight when a's job is stopped (its leases
    lapsed): the read still finishes and keeps them, so b delivers them without a 410."""
    sim.config.image_seconds = 0  # the first status read is the completed one
    a, _ = await replicas.open("a")
    chat = Chat(a, "alice")
    await chat.give_key(sim.issue_key(10))
    slow_read = {"method": "GET", "path": "/v1/images/generations/", "latency_ms": 600, "times": 1}
    async with httpx.AsyncClient() as http:
        assert (await http.post(f"{sim.base_url}/_sim/faults", json=slow_read)).status_code == 201
    await chat.send("/alltoken-image a lighthouse")
    [job] = await a.store.jobs_for(chat.owner)
    reads = ("GET", "/v1/images/generations/{id}")
    async with asyncio.timeout(10):
        while not sim.stats.requests_to(*reads):
            await asyncio.sleep(0.01)
    a.jobs.stop_all_local()  # the read is waiting on AllToken
    await asyncio.gather(*a.jobs._tasks.values(), return_exceptions=True)
    async with asyncio.timeout(10):
        while await a.store.job_media(job.id) is None:
            await asyncio.sleep(0.02)
    assert list(sim.stats.b64_deliveries.values()) == [1]
    _crash(a)

    b, convs_b = await replicas.open("b")
    await _takes_over_and_posts_the_image(b, convs_b)
    assert list(sim.stats.b64_deliveries.values()) == [1]
    assert not [e for e in sim.stats.errors if e[0] == 410], sim.stats.errors
    assert not chat.conv.of("upload")


async def test_an_image_whose_job_is_stopped_mid_upload_is_posted_once(
    replicas: Replicas, sim: AllTokenSim
) -> None:
    """The platform has the file but has not answered when the job is stopped: the stop waits
    for the answer and the rest of the delivery, so the job is done and not posted again."""
    a, _ = await replicas.open("a")
    chat = Chat(a, "alice")
    chat.conv.upload_answer = asyncio.Event()
    await chat.give_key(sim.issue_key(10))
    await chat.send("/alltoken-image a lighthouse")
    await chat.conv.wait_for(lambda c: bool(c.of("upload")), 10)
    a.jobs.stop_all_local()
    await asyncio.sleep(0.1)
    chat.conv.upload_answer.set()
    await asyncio.gather(*a.jobs._tasks.values(), return_exceptions=True)
    [job] = await a.store.jobs_for(chat.owner)
    assert job.state.get("uploaded") is True and job.status == "done", job
    assert await a.jobs.renew_and_take_over() == 0
    assert len(chat.conv.of("upload")) == 1
    assert "Image ready" in chat.conv.text()


async def test_a_delivered_image_leaves_no_bytes_in_the_store(
    replicas: Replicas, sim: AllTokenSim
) -> None:
    a, _ = await replicas.open("a")
    chat = Chat(a, "alice")
    await chat.give_key(sim.issue_key(10))
    await chat.send("/alltoken-image a calm sea")
    assert await a.jobs.wait_idle(10)
    [job] = await a.store.jobs_for(chat.owner)
    assert job.status == "done" and len(chat.conv.of("upload")) == 1
    assert await a.store.job_media(job.id) is None
