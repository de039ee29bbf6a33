"""Type every kind of key into every field of every command, then look for it everywhere.

`tokenbot run` (Slack HTTP mode, a real subprocess with DEBUG logging of every library) against the fake Slack and
the simulators. Fresh keys of all four kinds go into prompts, flags, channel messages, thread
replies, DMs, OpenMarlin instructions, button values and form fields; a password goes into the
OpenClaw Token sign-in form. Afterwards the database (every file of the data dir, WAL included),
the log files, the process's stdout and stderr and every request the fake Slack received are
searched for each secret: plain, base64, URL- and JSON-encoded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import signal
import subprocess
import sys
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from tests import leaks
from tests.fakes.slack import (
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    FakeSlack,
    block_actions,
    encode,
    event_callback,
    signed_headers,
    slash_command,
    view_submission,
)
from tests.restart.test_restart_slack import ROOT, _env, _free_port, _until, _wait_healthy


def _fresh_keys() -> dict[str, str]:
    return {
        "alltoken": "sk-at-" + secrets.token_hex(12),
        "openmarlin": "claw_wsk_" + secrets.token_hex(12),
        "openclaw_token": f"sk-mgmt-{uuid.uuid4()}",
        "openclaw_proxy": "sk-prov-" + secrets.token_hex(16),
    }


def encodings(secret: str) -> list[str]:
    """The secret as it could appear in a file or request: plain, JSON, URL and base64."""
    forms = {
        secret,
        json.dumps(secret)[1:-1],
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
    }
    raw = secret.encode()
    for offset in range(3):
        # base64 of the secret at each alignment inside a longer blob: drop the partial edges.
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = (offset * 4 + 2) // 3 + 1
        forms.add(encoded[start : len(encoded) - 4])
        forms.add(base64.urlsafe_b64encode(b"\0" * offset + raw).decode()[start : len(encoded) - 4])
    return sorted(f for f in forms if len(f) >= 12)


def _commands(k: dict[str, str]) -> list[tuple[str, str]]:
    """(slash command, text) with a key in every field the grammars know."""
    at, om, mg, pv = k["alltoken"], k["openmarlin"], k["openclaw_token"], k["openclaw_proxy"]
    return [
        ("/alltoken-chat", f"write a poem about {at}"),
        ("/alltoken-chat", f"--model={om} hello"),
        ("/alltoken-search", f"who owns {mg}"),
        ("/alltoken-image", f"a cat holding a sign that says {at}"),
        ("/alltoken-image", f"a cat --size={pv}"),
        ("/alltoken-image", f"a cat --quality={at}"),
        ("/alltoken-video", f"a sign reading {om} --duration=4"),
        ("/alltoken-video", f"waves --model={mg}"),
        ("/alltoken-models", f"--type={pv}"),
        ("/alltoken-cost", at),
        ("/alltoken-key", f"set {om}"),  # the wrong kind of key for this command
        ("/openmarlin", f"summarize {om} for me"),
        ("/openmarlin", f"to translate {at} --task"),
        ("/openmarlin", f"balance {pv}"),
        ("/openmarlin", f"topup {mg}"),
        ("/openclaw-token", f"keys create --name {pv}"),
        ("/openclaw-token", f"keys create --name ok --credit-limit {at}"),
        ("/openclaw-token", f"keys info {mg}"),
        ("/openclaw-token", f"credits buy {om}"),
        ("/openclaw-token", f"auth login --email {at}"),
        ("/openclaw-token", f"integrate {pv}"),
    ]


async def test_typed_keys_and_passwords_appear_nowhere(tmp_path: Path) -> None:
    keys = _fresh_keys()
    password = "Pw-" + secrets.token_urlsafe(12)
    for secret in [*keys.values(), password]:
        leaks.secret(secret)
    fake = await FakeSlack().start()
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    out, err = (tmp_path / "stdout.txt").open("w"), (tmp_path / "stderr.txt").open("w")
    data = tmp_path / "data"
    sim = subprocess.Popen(  # noqa: ASYNC220 - started once, before the loop is busy
        [sys.executable, "-m", "bot", "sim"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(
            TOKENBOT_SIM_TOKENS_PER_SECOND="0",
            TOKENBOT_SIM_IMAGE_SECONDS="0.2",
            TOKENBOT_SIM_VIDEO_SECONDS="0.2",
        ),
        cwd=ROOT,
    )
    bot: subprocess.Popen[str] | None = None
    try:
        assert sim.stdout is not None
        ready = json.loads(await asyncio.to_thread(sim.stdout.readline))
        port = _free_port()
        env = _env(
            ALLTOKEN_BASE_URL=ready["alltoken_base_url"],
            OPENMARLIN_SERVER_URL=ready["openmarlin_server_url"],
            OPENCLAW_TOKEN_API_BASE=ready["openclaw_token_api_base"],
            TOKENBOT_DATA_DIR=str(data),
            TOKENBOT_HTTP_HOST="127.0.0.1",
            TOKENBOT_HTTP_PORT=str(port),
            TOKENBOT_LOG_LEVEL="DEBUG-ALL",
            SLACK_BOT_TOKEN=BOT_TOKEN,
            SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=fake.api_url,
        )
        bot = subprocess.Popen(  # noqa: ASYNC220 - started once, before the loop is busy
            [sys.executable, "-m", "bot", "run"],
            stdout=out,
            stderr=err,
            text=True,
            env=env,
            cwd=ROOT,
        )
        await _wait_healthy(http, port, bot)
        url = f"http://127.0.0.1:{port}/slack/events"

        async def post(kind: str, payload: dict[str, Any]) -> None:
            body, ctype = encode(kind, payload)
            async with http.post(url, data=body, headers=signed_headers(body, ctype)) as r:
                assert r.status == 200, await r.text()

        demo = ready["demo_keys"]
        await post(
            "slash_commands",
            slash_command(
                "/alltoken-key",
                f"set {demo['alltoken']}",
                user="U1",
                response_url=fake.new_response_url(),
            ),
        )
        await post(
            "slash_commands",
            slash_command(
                "/openmarlin",
                f"key set {demo['openmarlin']}",
                user="U1",
                response_url=fake.new_response_url(),
            ),
        )
        answered = 2
        for name, text in _commands(keys):
            await post(
                "slash_commands",
                slash_command(
                    name, text, user="U1", channel="C1", response_url=fake.new_response_url()
                ),
            )
            answered += 1
        # Channel messages, a DM, a thread reply: the typed-trigger paths.
        for text, channel in [
            (f"alltoken chat tell me about {keys['alltoken']}", "C2"),
            (f"use openmarlin to email {keys['openclaw_token']}", "C2"),
            (f"{keys['openclaw_proxy']}", "D9"),
            (f"<@{BOT_USER}> alltoken image {keys['openmarlin']}", "C3"),
        ]:
            event = fake.user_message(channel, "U1", text)
            await post("events_api", event_callback(event))
        # Buttons carry a key as their value (a forged or mangled click).
        for action in ("alltoken.video.cancel", "openclaw.confirm", "openmarlin.topup"):
            await post(
                "interactive",
                block_actions(
                    action, keys["alltoken"], user="U1", response_url=fake.new_response_url()
                ),
            )
        # Forms: the sign-in form gets a password (and a key where the e-mail goes).
        await post(
            "slash_commands",
            slash_command(
                "/openclaw-token",
                "auth login --email",
                user="U1",
                response_url=fake.new_response_url(),
            ),
        )
        await _until(lambda: len(fake.views) >= 1, 10, "the sign-in form")
        login = fake.views[-1]
        for values in (
            {"email": "demo@openclaw.dev", "password": password},
            {"email": keys["openclaw_token"], "password": password},
        ):
            await post("interactive", view_submission(login, values, user="U1"))
        await asyncio.sleep(2.0)  # let replies and jobs finish
        await _until(lambda: fake.calls, 5, "any reply")
        bot.send_signal(signal.SIGTERM)
        await asyncio.to_thread(bot.wait, 20)
    finally:
        if bot is not None and bot.poll() is None:
            bot.kill()
            bot.wait(10)
        sim.kill()
        sim.wait(10)
        out.close()
        err.close()
        await http.close()
        await fake.stop()
    # Everything the bot wrote or sent.
    haystacks: dict[str, str] = {
        "stdout": (tmp_path / "stdout.txt").read_text(errors="replace"),
        "stderr": (tmp_path / "stderr.txt").read_text(errors="replace"),
        "slack requests": json.dumps([c.args for c in fake.calls], default=str)
        + json.dumps([r.payload for r in fake.responses], default=str)
        + json.dumps(fake.ephemerals, default=str),
    }
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files), files
    for path in files:
        haystacks[str(path.relative_to(data))] = path.read_bytes().decode("latin-1")
    assert "Traceback" not in haystacks["stderr"], haystacks["stderr"][-3000:]
    # The run did reach its replies (a scan of nothing proves nothing).
    assert "key_in_text" in haystacks["slack requests"] or "API key" in haystacks["slack requests"]
    found = [
        (name, where)
        for name, secret in [*keys.items(), ("password", password)]
        for form in encodings(secret)
        for where, text in haystacks.items()
        if form in text
    ]
    assert not found, found
