"""Shared fixtures: a fast AllToken simulator on a free port and a TokenBot wired to it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from bot.core.app import Outcome, TokenBot
from bot.core.http import build_http_client
from bot.core.log_setup import quiet_libraries
from bot.core.messages import Conversation, Destination, Inbound
from bot.core.settings import Settings
from bot.sim.alltoken.server import AllTokenSim, AllTokenSimConfig
from bot.store import Owner
from tests import leaks
from tests.fakes.conversation import RecordingConversation
from tests.store.postgres_server import PostgresForTests, PostgresUnavailable, start_test_postgres

# A failing test prints its captured logs: keep the libraries' DEBUG chatter out of them
# (aiosqlite logs every query), as tokenbot itself does.
quiet_libraries()

# Hypothesis's per-example deadline and its "too slow" check time the machine, not tokenbot: on
# a busy CI runner they fail tests whose behaviour is right. Explicit settings still apply.
hypothesis_settings.register_profile(
    "tokenbot", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("tokenbot")

FAST_SIM = AllTokenSimConfig(
    image_seconds=0.2,
    video_seconds=0.3,
    tokens_per_second=0,
    poll_after_ms=50,
    image_pixels=64,  # small pictures: cheap to draw, upload and scan for leaks
)


def _record_form_secrets() -> None:
    """Every form submitted in any suite (directly, as a Slack modal or a Discord modal) goes
    through `TokenBot.submit_form`: remember its password and key fields for the final scan."""
    original = TokenBot.submit_form

    async def submit_form(
        self: TokenBot,
        inbound: Inbound,
        form_id: str,
        values: dict[str, str],
        conversation: Conversation,
    ) -> bool:
        leaks.form_secrets(values)
        return await original(self, inbound, form_id, values, conversation)

    TokenBot.submit_form = submit_form  # type: ignore[method-assign]


_record_form_secrets()


@pytest.fixture
async def tokenbot_http() -> AsyncIterator[httpx.AsyncClient]:
    """The bot's shared HTTP client as `build_http_client` makes it (10 s time-out)."""
    client = build_http_client(10)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def sim() -> AsyncIterator[AllTokenSim]:
    """A fast simulator on a free loopback port."""
    s = AllTokenSim(FAST_SIM.model_copy())
    await s.start()
    try:
        yield s
    finally:
        for key in s._balances:  # the keys it issued (demo key included)
            leaks.secret(key)
        await s.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresForTests]:
    """One real PostgreSQL per test session (per xdist worker), started from a temp dir.

    Never skipped: if no server can start, every test that needs one fails with the reason.
    """
    try:
        server = start_test_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    print(f"\nPostgreSQL for the tests: {server.how}, started in {server.started_in_s:.2f} s")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def postgres_url(postgres_server: PostgresForTests) -> AsyncIterator[str]:
    """The URL of a new, empty database on the session's server, dropped after the test."""
    name, url = await postgres_server.create_database()
    try:
        yield url
    finally:
        await postgres_server.drop_database(name)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow(seconds): a test that takes about this long; the longest run first"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked slow first, longest first, the rest in their own order.

    The workers (Makefile: `--dist load --maxschedchunk 2`) take tests in this order, two at a
    time, so the long ones start at once on different workers instead of one of them ending
    the run alone.
    """

    def seconds(item: pytest.Item) -> float:
        mark = item.get_closest_marker("slow")
        return float(mark.args[0]) if mark is not None and mark.args else 0.0

    items.sort(key=seconds, reverse=True)  # stable: unmarked tests keep their order


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Fault outcomes recorded by a worker (tests/faults/report.py), taken in for the table."""
    if any(name == "tokenbot_fault_outcome" for name, _ in report.user_properties):
        # Imported only once such a report arrives: runs without fault cases never load it.
        from tests.faults import report as fault_report

        fault_report.merge(report)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The fault suite's tables, when any fault case ran (in this process or a worker)."""
    if "tests.faults.report" in sys.modules:
        sys.modules["tests.faults.report"].write_tables(terminalreporter)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the suite: no secret (stored key, password, anything key-shaped) may appear in
    any log, DB or other file any suite left under basetemp, nor in any reply the bot sent.

    Under pytest-xdist each worker hands what it saw to the controller (a file next to the
    workers' temp dirs), and the controller scans everything once, so the run fails there."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None else None
    worker = getattr(session.config, "workerinput", None)
    if worker is not None:
        if base is not None:
            leaks.dump(base.parent / f"{leaks.DUMP_PREFIX}{worker['workerid']}.json")
        return
    if base is not None:
        for dump in sorted(base.glob(f"{leaks.DUMP_PREFIX}*.json")):
            leaks.load(dump)
    found = leaks.scan(base)
    if found:
        session.exitstatus = 1
        print("\nSECRET LEAK: secrets found after the suite:\n" + "\n".join(found[:20]))


def make_settings(data_dir: Path, sim: AllTokenSim, **extra: object) -> Settings:
    """Settings pointing at the simulator with an isolated data dir."""
    return Settings(
        alltoken_base_url=sim.base_url,
        data_dir=data_dir,
        http_timeout_s=5.0,
        max_polls_per_second=1000.0,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def bot(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[TokenBot]:
    """A TokenBot on the simulator, with a recording conversation factory for jobs."""
    b = await TokenBot.create(make_settings(tmp_path / "data", sim))
    conversations: dict[str, RecordingConversation] = {}

    def factory(dest: Destination) -> RecordingConversation:
        return conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

    for platform in ("console", "slack", "discord"):
        b.register_platform(platform, factory)
    b.test_conversations = conversations  # type: ignore[attr-defined]
    try:
        yield b
    finally:
        await b.aclose()


class Chat:
    """Drives a TokenBot as one user in one conversation."""

    def __init__(
        self,
        bot: TokenBot,
        user: str = "alice",
        channel: str = "general",
        thread: str | None = None,
        platform: str = "console",
    ) -> None:
        self.bot = bot
        self.platform = platform
        self.user = user
        self.channel = channel
        self.thread = thread
        self.inbound_proto = Inbound(
            platform=platform,
            workspace="w1",
            channel=channel,
            thread=thread,
            user=user,
            text="",
            is_direct=True,
            # The console's messages are private to the person typing; other platforms' are not.
            is_public=platform != "console",
        )
        dest = self.inbound_proto.destination()
        convs: dict[str, RecordingConversation] = bot.test_conversations  # type: ignore[attr-defined]
        self.conv = convs.setdefault(dest.conversation_key, RecordingConversation(dest))

    @property
    def owner(self) -> Owner:
        return Owner(platform=self.platform, workspace="w1", user=self.user)

    def inbound(self, text: str, **kw: object) -> Inbound:
        return self.inbound_proto.model_copy(update={"text": text, **kw})

    async def send(self, text: str, **kw: object) -> Outcome:
        return await self.bot.handle(self.inbound(text, **kw), self.conv)

    async def give_key(self, key: str) -> None:
        await self.bot.store.put_credential(self.owner, "alltoken", key)


@pytest.fixture
async def alice(bot: TokenBot, sim: AllTokenSim) -> Chat:
    """Alice, with a funded AllToken key."""
    chat = Chat(bot, "alice")
    await chat.give_key(sim.issue_key(10.0))
    return chat
