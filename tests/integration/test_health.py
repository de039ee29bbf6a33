"""/healthz, /readyz and /metrics over real HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from bot.core.app import TokenBot
from bot.core.http_server import LISTEN_BACKLOG, HttpServer
from tests.conftest import Chat


async def test_health_ready_and_metrics(bot: TokenBot, alice: Chat) -> None:
    server = HttpServer(bot)
    port = await server.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{base}/healthz")).json() == {"status": "ok"}
            ready = await client.get(f"{base}/readyz")
            assert ready.status_code == 200 and ready.json()["checks"] == {
                "store": True,
                "store_writes": True,
            }

            async def down() -> bool:
                return False

            bot.readiness["slack"] = down
            not_ready = await client.get(f"{base}/readyz")
            assert not_ready.status_code == 503 and not_ready.json()["checks"]["slack"] is False

            await alice.send("/alltoken-chat hello")
            await alice.send("/alltoken-image x --quality=ultra")
            text = (await client.get(f"{base}/metrics")).text
            assert 'tokenbot_commands_total{command="chat",outcome="ok"} 1.0' in text
            assert 'tokenbot_commands_total{command="image",outcome="usage_error"} 1.0' in text
            assert 'tokenbot_backend_request_seconds_count{backend="alltoken",status="2xx"}' in text
            assert "tokenbot_jobs_pending 0.0" in text
    finally:
        await server.aclose()


async def test_the_listening_socket_has_a_deep_accept_queue(bot: TokenBot) -> None:
    # Slack opens a connection per request: with the kernel's default queue of 128, a burst of
    # 500 slash commands overflowed it and each overflowed client waited 1 s for a SYN retry.
    # `ss` reports a listening socket's accept-queue size as its Send-Q.
    server = HttpServer(bot)
    port = await server.start("127.0.0.1", 0)
    try:
        ss = await asyncio.create_subprocess_exec(
            "ss", "-Hltn", f"sport = :{port}", stdout=asyncio.subprocess.PIPE
        )
        stdout, _ = await ss.communicate()
        assert ss.returncode == 0
        out = stdout.decode().split()
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert out[0] == "LISTEN"
        assert int(out[2]) == min(LISTEN_BACKLOG, somaxconn) > 128
    finally:
        await server.aclose()
