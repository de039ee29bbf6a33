"""Bots that share one database, as replicas (or one bot and its restarted self) do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.backends.openclaw_token.service import CLI_RETRY, OpenClawTokenService
from bot.core.app import TokenBot
from bot.core.messages import Destination
from bot.core.settings import Settings
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import OpenClawTokenSim
from tests.conftest import make_settings
from tests.fakes.conversation import RecordingConversation
from tests.fakes.slack import FakeSlack, SlackHarness


@dataclass(frozen=True)
class SharedDatabase:
    """One database for several bots, each with a data dir of its own and the same master key."""

    name: str
    url: str
    master_key: str
    root: Path

    def settings(self, replica: str, sim: AllTokenSim, **extra: object) -> Settings:
        """Settings for replica `replica` on this database; `extra` overrides any."""
        shared: dict[str, object] = {"database_url": self.url, "master_key": self.master_key}
        return make_settings(self.root / replica, sim, **{**shared, **extra})


@pytest.fixture(params=("sqlite", "postgresql"))
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> SharedDatabase:
    """A SQLite file or a fresh PostgreSQL database, shared by the bots of one test."""
    key = Fernet.generate_key().decode()
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared' / 'tokenbot.db'}"
    else:
        url = str(request.getfixturevalue("postgres_url"))
    return SharedDatabase(request.param, url, key, tmp_path)


@asynccontextmanager
async def replica(
    db: SharedDatabase,
    name: str,
    sim: AllTokenSim,
    openclaw: OpenClawTokenSim | None = None,
    **settings: object,
) -> AsyncIterator[TokenBot]:
    """A TokenBot on `db` with recording conversations; closed on exit.

    Its replica id is `name` (two bots on one SQLite file would otherwise share the embedded
    default id and each think the other's jobs its own); `settings` override any setting.
    """
    extra: dict[str, object] = {"allow_new_store": True, "replica_id": name, **settings}
    if openclaw is not None:
        extra["openclaw_token_api_base"] = openclaw.base_url
    bot = await TokenBot.create(db.settings(name, sim, **extra))
    if openclaw is not None:
        bot.services.get(OpenClawTokenService).retry = replace(CLI_RETRY, backoff_s=0.01)
    conversations: dict[str, RecordingConversation] = {}

    def factory(dest: Destination) -> RecordingConversation:
        return conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

    for platform in ("console", "slack", "discord"):
        bot.register_platform(platform, factory)
    bot.test_conversations = conversations  # type: ignore[attr-defined]
    try:
        yield bot
    finally:
        await bot.aclose()


@asynccontextmanager
async def slack_replicas(
    db: SharedDatabase, sim: AllTokenSim
) -> AsyncIterator[tuple[SlackHarness, SlackHarness]]:
    """Slack replicas a and b behind one fake Slack, on `db`; both closed on exit."""
    fake = await FakeSlack().start()

    async def start(name: str) -> SlackHarness:
        return await SlackHarness.start(
            db.root / name,
            sim.base_url,
            fake=fake,
            allow_new_store=True,
            database_url=db.url,
            master_key=db.master_key,
        )

    a = await start("a")
    try:
        b = await start("b")
        try:
            yield a, b
        finally:
            await b.aclose(stop_fake=False)
    finally:
        await a.aclose()
