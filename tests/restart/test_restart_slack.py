"""SIGKILL `tokenbot run` (Slack HTTP mode, against the fake Slack) with 50 jobs in flight.

20 images, 20 videos and 10 OpenMarlin tasks are submitted as signed slash commands; once the
simulators have every submission (and before any finishes) the bot is killed with SIGKILL and
started again on the same data dir. Every job must then be delivered exactly once, and every
image read from AllToken's one-shot endpoint exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.fakes.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    encode,
    signed_headers,
    slash_command,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGES, VIDEOS, TASKS = 20, 20, 10
USERS = 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    prefixes = ("TOKENBOT_", "ALLTOKEN_", "OPENMARLIN_", "OPENCLAW_", "SLACK_", "DISCORD_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


@contextmanager
def _process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


async def _until(check: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await check() if asyncio.iscoroutinefunction(check) else check():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _wait_healthy(
    http: aiohttp.ClientSession, port: int, proc: subprocess.Popen[str]
) -> None:
    async def up() -> bool:
        assert proc.poll() is None, "tokenbot exited during start-up"
        try:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await _until(up, 20, "tokenbot to listen")


async def _stats(http: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with http.get(f"{base}/_sim/stats") as r:
        data: dict[str, Any] = await r.json()
        return data


def _texts(fake: FakeSlack, channel: str, needle: str) -> int:
    """Messages posted or edited into `channel` whose content contains `needle`."""
    return sum(
        1
        for c in fake.calls
        if c.method in ("chat.postMessage", "chat.update")
        and c.args.get("channel") == channel
        and needle in json.dumps([c.args.get("text"), c.args.get("blocks")])
    )


@pytest.mark.slow(16)
async def test_sigkill_mid_flight_then_restart_delivers_every_job_once(tmp_path: Path) -> None:
    sim_env = _env(
        TOKENBOT_SIM_IMAGE_SECONDS="5",
        TOKENBOT_SIM_VIDEO_SECONDS="5",
        TOKENBOT_SIM_OPENMARLIN_TASK_SECONDS="5",
        TOKENBOT_SIM_TOKENS_PER_SECOND="0",
    )
    fake = await FakeSlack().start()
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    try:
        with _process(["sim"], sim_env) as sim:
            assert sim.stdout is not None
            ready = json.loads(await asyncio.to_thread(sim.stdout.readline))
            alltoken, marlin = ready["alltoken_base_url"], ready["openmarlin_server_url"]
            port = _free_port()
            bot_env = _env(
                ALLTOKEN_BASE_URL=alltoken,
                OPENMARLIN_SERVER_URL=marlin,
                OPENCLAW_TOKEN_API_BASE=ready["openclaw_token_api_base"],
                TOKENBOT_DATA_DIR=str(tmp_path / "data"),
                TOKENBOT_HTTP_HOST="127.0.0.1",
                TOKENBOT_HTTP_PORT=str(port),
                TOKENBOT_MAX_POLLS_PER_SECOND="200",
                # Ten long jobs a user, all in flight when the process dies: the in-flight
                # limits (tests/integration/test_job_limits.py) would refuse half of them.
                TOKENBOT_MAX_JOBS_PER_USER="0",
                TOKENBOT_MAX_JOBS_PER_WORKSPACE="0",
                TOKENBOT_LOG_LEVEL="INFO",
                # The restarted process is the same replica: it takes its jobs back at once
                # rather than after their leases run out.
                TOKENBOT_REPLICA_ID="restart-test",
                SLACK_BOT_TOKEN=BOT_TOKEN,
                SLACK_SIGNING_SECRET=SIGNING_SECRET,
                SLACK_API_URL=fake.api_url,
            )
            url = f"http://127.0.0.1:{port}/slack/events"

            async def command(name: str, text: str, user: str, channel: str) -> None:
                payload = slash_command(
                    name, text, user=user, channel=channel, response_url=fake.new_response_url()
                )
                body, ctype = encode("slash_commands", payload)
                async with http.post(url, data=body, headers=signed_headers(body, ctype)) as r:
                    assert r.status == 200, await r.text()

            users = [f"UR{i}" for i in range(USERS)]
            with _process(["run"], bot_env) as first:
                await _wait_healthy(http, port, first)
                keys = dict(ready["demo_keys"])
                # A workspace with credits for every task (the demo one holds five).
                async with http.post(f"{marlin}/_sim/keys", json={"balance": 1000}) as r:
                    keys["openmarlin"] = (await r.json())["key"]
                await asyncio.gather(
                    *(
                        command("/alltoken-key", f"set {keys['alltoken']}", u, "CKEYS")
                        for u in users
                    ),
                    *(
                        command("/openmarlin", f"key set {keys['openmarlin']}", u, "CKEYS")
                        for u in users
                    ),
                )
                await _until(
                    lambda: len(fake.responses) + len(fake.ephemerals) >= 2 * USERS,
                    10,
                    "keys stored",
                )
                await asyncio.gather(
                    *(
                        command(
                            "/alltoken-image",
                            f"a lighthouse, take {i}",
                            users[i % USERS],
                            f"CI{i:02d}",
                        )
                        for i in range(IMAGES)
                    ),
                    *(
                        command(
                            "/alltoken-video",
                            f"waves, take {i} --duration=4",
                            users[i % USERS],
                            f"CV{i:02d}",
                        )
                        for i in range(VIDEOS)
                    ),
                    *(
                        command(
                            "/openmarlin",
                            f"summarize page {i} --task",
                            users[i % USERS],
                            f"CT{i:02d}",
                        )
                        for i in range(TASKS)
                    ),
                )

                async def all_submitted() -> bool:
                    at = await _stats(http, alltoken)
                    om = await _stats(http, marlin)
                    tasks = sum(
                        n for k, n in om["requests"].items() if k.startswith("POST /v1/tasks")
                    )
                    return (
                        at["image_submissions"] >= IMAGES
                        and at["video_submissions"] >= VIDEOS
                        and tasks >= TASKS
                    )

                await _until(all_submitted, 15, "every submission to reach the simulators")
                await asyncio.sleep(0.5)  # let the bot save the task ids it was given
                assert not (await _stats(http, alltoken))["b64_deliveries"], "killed too late"
                first.send_signal(signal.SIGKILL)
                first.wait(timeout=10)
            killed_at = len(fake.calls)
            assert not fake.calls_to("files.completeUploadExternal")

            with _process(["run"], bot_env) as second:
                await _wait_healthy(http, port, second)

                def delivered() -> bool:
                    return (
                        len(fake.calls_to("files.completeUploadExternal")) >= IMAGES
                        and all(_texts(fake, f"CV{i:02d}", "Video ready") for i in range(VIDEOS))
                        and all(_texts(fake, f"CT{i:02d}", "succeeded") for i in range(TASKS))
                    )

                try:
                    await _until(delivered, 30, "every job to be delivered after the restart")
                except AssertionError:
                    images = len(fake.calls_to("files.completeUploadExternal"))
                    videos = sum(
                        bool(_texts(fake, f"CV{i:02d}", "Video ready")) for i in range(VIDEOS)
                    )
                    tasks = sum(bool(_texts(fake, f"CT{i:02d}", "succeeded")) for i in range(TASKS))
                    logs = "\n".join(
                        p.read_text()[-3000:] for p in (tmp_path / "data").rglob("*.log")
                    )
                    missing = [
                        (c.method, c.args.get("text"))
                        for c in fake.calls
                        if str(c.args.get("channel", "")).startswith("CT")
                    ] + [(e.get("channel"), e.get("text")) for e in fake.ephemerals][-12:]
                    raise AssertionError(
                        f"{images=} {videos=} {tasks=}\n{missing}\n{logs}"
                    ) from None
                await asyncio.sleep(1.0)  # anything delivered twice would show up by now
                assert second.poll() is None
                second.send_signal(signal.SIGTERM)
                second.wait(timeout=15)

            at = await _stats(http, alltoken)
            om = await _stats(http, marlin)
    finally:
        await http.close()
        await fake.stop()

    assert killed_at < len(fake.calls)
    uploads = fake.calls_to("files.completeUploadExternal")
    per_channel = sorted(str(c.args.get("channel_id")) for c in uploads)
    assert per_channel == [f"CI{i:02d}" for i in range(IMAGES)], per_channel
    for i in range(IMAGES):
        assert _texts(fake, f"CI{i:02d}", "Image ready") == 1
    for i in range(VIDEOS):
        assert _texts(fake, f"CV{i:02d}", "Video ready") == 1
    for i in range(TASKS):
        assert _texts(fake, f"CT{i:02d}", "succeeded") == 1
    # The one-shot read: every image's bytes left AllToken exactly once, none re-fetched.
    assert len(at["b64_deliveries"]) == IMAGES
    assert set(at["b64_deliveries"].values()) == {1}
    assert not at["r2_downloads"]
    # No job was submitted twice across the restart.
    assert at["image_submissions"] == IMAGES and at["video_submissions"] == VIDEOS
    assert sum(n for k, n in om["requests"].items() if k.startswith("POST /v1/tasks")) == TASKS
