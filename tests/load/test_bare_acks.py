"""bench/bare_acks.py, the burst rows' floor: it must really ack through bolt and really defer
through discord.py, or the "libraries alone" rows would compare tokenbot with nothing."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.discord import BOT_TOKEN as DISCORD_BOT_TOKEN
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import SIGNING_SECRET, encode, signed_headers, slash_command

ROOT = Path(__file__).resolve().parents[2]
_PORT = re.compile(rb"on port (\d+)")


async def _port(process: asyncio.subprocess.Process) -> int:
    assert process.stdout is not None
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line, "bare_acks exited before listening"
        found = _PORT.search(line)
        if found:
            return int(found.group(1))


async def test_bare_acks_acks_signed_slash_commands_and_defers_interactions() -> None:
    fake = await FakeDiscord().start()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "DISCORD_TOKEN": DISCORD_BOT_TOKEN,
        "DISCORD_API_URL": fake.api_url,
        "DISCORD_GATEWAY_URL": fake.gateway_url,
        "DISCORD_SHARD_IDS": "0",
        "DISCORD_SHARD_COUNT": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bare_acks", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE
    )
    try:
        url = f"http://127.0.0.1:{await _port(process)}"
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                async with http.get(f"{url}/readyz") as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the gateway never became ready")
            body, ctype = encode("slash_commands", slash_command("/alltoken-chat", "hi"))
            async with http.post(
                f"{url}/slack/events", data=body, headers=signed_headers(body, ctype)
            ) as resp:
                assert resp.status == 200
            # bolt checks the signature: a wrong one is refused, so the floor includes it.
            forged = {**signed_headers(body, ctype), "X-Slack-Signature": "v0=" + "0" * 64}
            async with http.post(f"{url}/slack/events", data=body, headers=forged) as resp:
                assert resp.status == 401
        interaction = await fake.slash("alltoken-chat", prompt="hi")
        await fake.wait_until(lambda: interaction.callback_at is not None, what="the defer")
        assert interaction.response_type == 5  # deferred, "thinking…"
    finally:
        if process.returncode is None:
            process.terminate()
        assert await asyncio.wait_for(process.wait(), 20) == 0
        await fake.stop()
