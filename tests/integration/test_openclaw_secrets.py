"""Passwords and keys: a password never appears in a log, a reply or the database."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.log_setup import configure_logging
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawTokenSim
from tests.conftest import Chat
from tests.integration.openclaw_support import running_bot, running_sim

PASSWORD = "Tr0ub4dor&3-horse-battery"
WRONG = "Wr0ng-but-still-secret-42"
TYPED = "typed-in-the-channel-77"


@pytest.fixture
async def oc() -> AsyncIterator[OpenClawTokenSim]:
    async with running_sim() as s:
        yield s


def _every_file(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


async def test_a_password_never_appears_in_a_log_a_reply_or_the_db(
    tmp_path: Path, sim: AllTokenSim, oc: OpenClawTokenSim, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    log_file = configure_logging("DEBUG", data, stderr=False)
    caplog.set_level(logging.DEBUG)
    conversations = []
    try:
        async with running_bot(data, sim, oc) as bot:
            bob = Chat(bot, "bob")
            conversations.append(bob.conv)
            await bob.send("/openclaw-token auth register")
            form_id = bob.conv.forms[-1].form_id
            values = {"email": "bob@example.com", "password": PASSWORD, "confirm": PASSWORD}
            assert await bot.submit_form(bob.inbound("x"), form_id, values, bob.conv)
            assert not await bot.submit_form(bob.inbound("x"), form_id, values, bob.conv)  # exists
            await bob.send("/openclaw-token auth login --email")
            login = bob.conv.forms[-1].form_id
            wrong = {"email": "bob@example.com", "password": WRONG}
            assert not await bot.submit_form(bob.inbound("x"), login, wrong, bob.conv)
            right = {"email": "bob@example.com", "password": PASSWORD}
            assert await bot.submit_form(bob.inbound("x"), login, right, bob.conv)
            await bob.send("/openclaw-token credits balance")
            # Typed into a public channel: refused, never stored or echoed.
            eve = Chat(bot, "eve", platform="slack")
            conversations.append(eve.conv)
            await eve.send(f"openclaw-token auth login --password {TYPED}", is_direct=False)
            await eve.send(f"openclaw-token auth login eve@example.com {TYPED}", is_direct=False)
            mgmt = await bot.store.get_credential(bob.owner, "openclaw_token")
            assert mgmt and mgmt.startswith("sk-mgmt-")
    finally:
        configure_logging("WARNING", None, stderr=False)
    secrets = [PASSWORD, WRONG, TYPED]
    replies = "\n".join(
        c.text() + json.dumps([p.model_dump(mode="json") for e in c.events for p in e.parts])
        for c in conversations
    )
    for secret in secrets:
        assert secret not in replies
        assert secret not in caplog.text
        for path in _every_file(data):  # the DB (and its WAL), the log file, the master key
            assert secret.encode() not in path.read_bytes(), path
    assert mgmt not in replies and DEMO_MGMT_KEY not in replies
    assert log_file is not None and log_file.exists()
    assert any(p.name == "tokenbot.db" for p in _every_file(data))
    # The simulator, too, keeps only a salted hash.
    assert PASSWORD.encode() != oc.account("bob@example.com").password_hash
