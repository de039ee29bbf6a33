"""Budgets over real HTTP to the simulators: each cap refuses before any backend request (the
simulator's request log shows nothing sent), the 80 % notices (user privately, admins by DM,
once per period even across replicas), a member without a key on the workspace key, the
check-and-hold under 20 concurrent videos on SQLite and PostgreSQL, and the ledger's cost
source per backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bot.backends.alltoken.jobs import CANCEL_ACTION
from bot.backends.openmarlin.family import openmarlin_family
from bot.backends.openmarlin.jobs import OpenMarlinTiming
from bot.core.app import TokenBot
from bot.core.messages import Destination, Failure, Notice
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import OpenClawTokenSim
from bot.sim.openmarlin.server import OpenMarlinSim, OpenMarlinSimConfig
from bot.store import LedgerEntry, Owner, Store, UsageRecord
from bot.store.models import KeySource, SpendSnapshot, period_bounds
from bot.teams.family import tokenbot_family
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation
from tests.integration.openclaw_support import running_bot, running_sim, signed_in
from tests.restart.replicas import SharedDatabase, replica, shared_db

__all__ = ["shared_db"]  # the fixture, used by the replica tests below

WS = "w1"
BOSS = "UBOSS"  # TOKENBOT_ADMINS (on Slack)
HELPER = "UHELP"  # an admin added in chat (the policy's "admins")
VIDEO_ESTIMATE = Decimal("0.10")  # seedance-1.5-pro in the simulator's catalog: $0.02/s x 5 s


class Recorder:
    """The conversation factory: each channel's conversation, and each admin's DMs apart."""

    def __init__(self) -> None:
        self.conversations: dict[str, RecordingConversation] = {}
        self.dms: dict[str, RecordingConversation] = {}

    def __call__(self, dest: Destination) -> RecordingConversation:
        if dest.is_direct:
            return self.dms.setdefault(dest.user, RecordingConversation(dest))
        return self.conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

    def dm_texts(self, user: str) -> list[str]:
        conv = self.dms.get(user)
        return [e.text for e in conv.of("direct")] if conv else []


def wire(bot: TokenBot) -> Recorder:
    recorder = Recorder()
    for platform in ("console", "slack", "discord"):
        bot.register_platform(platform, recorder)
    bot.test_conversations = recorder.conversations  # type: ignore[attr-defined]
    return recorder


@dataclass
class Setup:
    bot: TokenBot
    sim: AllTokenSim
    recorder: Recorder
    workspace_key: str


@pytest.fixture
async def team(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[Setup]:
    bot = await TokenBot.create(make_settings(tmp_path / "data", sim, admins=f"slack:{BOSS}"))
    recorder = wire(bot)
    key = sim.issue_key(10.0)
    await bot.store.put_workspace_key("slack", WS, "alltoken", key, by_user=BOSS)
    await bot.store.set_policy("slack", WS, "admins", [HELPER], BOSS)
    try:
        yield Setup(bot, sim, recorder, key)
    finally:
        await bot.aclose()


class Member(Chat):
    """A Slack member in channel C1 (not a DM), with no key of their own unless given one."""

    def __init__(self, bot: TokenBot, user: str) -> None:
        super().__init__(bot, user, channel="C1", platform="slack")
        self.inbound_proto = self.inbound_proto.model_copy(update={"is_direct": False})

    def refusals(self) -> list[Failure]:
        return [
            p
            for e in self.conv.of("whisper")
            for p in e.parts
            if isinstance(p, Failure) and p.code == "budget_exceeded"
        ]

    def notices(self) -> list[str]:
        return [p.text for e in self.conv.of("whisper") for p in e.parts if isinstance(p, Notice)]


async def set_caps(store: Store, **caps: str | list[str]) -> None:
    """The budget policy: amounts as decimal text, `own_key_opt_in` a list of users."""
    await store.set_policy("slack", WS, "budget", caps, BOSS)


async def spent_already(
    store: Store, user: str, usd: str, key_source: KeySource = "workspace"
) -> None:
    """A charge recorded earlier today (on the workspace key unless told)."""
    owner = Owner(platform="slack", workspace=WS, user=user)
    usage = UsageRecord(owner=owner, service="alltoken", command="chat", model="gpt-5.4-mini")
    entry = LedgerEntry(
        owner=owner,
        channel="C1",
        service="alltoken",
        command="chat",
        model="gpt-5.4-mini",
        cost_usd=Decimal(usd),
        cost_source="reported",
        key_source=key_source,
    )
    await store.record_charge(usage, entry)


@dataclass(frozen=True)
class Peek:
    snapshot: SpendSnapshot
    allowed: bool = False


async def counted(store: Store, user: str) -> SpendSnapshot:
    """What the caps see now (ledger + open holds), read the way a reservation reads it."""
    owner = Owner(platform="slack", workspace=WS, user=user)
    peek, hold = await store.reserve_spend(
        owner, "t", "t", Decimal(0), "workspace", decide=Peek, now=datetime.now(UTC), ttl_s=0
    )
    assert hold is None
    return peek.snapshot


async def ledger(store: Store, user: str | None = None) -> list[LedgerEntry]:
    since = period_bounds(datetime.now(UTC))[1]
    return await store.ledger_rows("slack", WS, user=user, since=since)


def sent(sim: AllTokenSim) -> dict[tuple[str, str], int]:
    return dict(sim.stats.requests)


# --- the workspace key ---------------------------------------------------------------------------


async def test_a_member_without_a_key_uses_the_workspace_key_within_the_caps(team: Setup) -> None:
    await set_caps(team.bot.store, workspace_monthly_usd="5.00", user_daily_usd="1.00")
    bob = Member(team.bot, "bob")
    await bob.send("/alltoken-chat what is a tide")
    [answer] = bob.conv.of("stream")
    assert answer.text and not bob.refusals()
    assert team.sim.balance(team.workspace_key) < 10.0  # the workspace's key paid
    [row] = await ledger(team.bot.store, "bob")
    assert (row.service, row.command, row.key_source, row.cost_source) == (
        "alltoken",
        "chat",
        "workspace",
        "reported",
    )
    assert row.cost_usd == Decimal(str(10.0 - team.sim.balance(team.workspace_key))).quantize(
        row.cost_usd
    )
    assert row.channel == "C1" and row.request_id
    # The hold was settled into that row: nothing else counts against the caps.
    assert (await counted(team.bot.store, "bob")).user_day_usd == row.cost_usd


async def test_without_any_key_the_member_is_told_to_set_one(team: Setup) -> None:
    await team.bot.store.delete_workspace_key("slack", WS, "alltoken")
    bob = Member(team.bot, "bob")
    before = sent(team.sim)
    await bob.send("/alltoken-chat hello")
    assert "AllToken" in bob.conv.of("whisper")[-1].text and not bob.conv.of("stream")
    assert sent(team.sim) == before


async def test_own_key_calls_are_not_capped_unless_the_member_opted_in(team: Setup) -> None:
    await set_caps(team.bot.store, user_daily_usd="1.00")
    await spent_already(team.bot.store, "dana", "1.00", key_source="own")
    dana = Member(team.bot, "dana")
    await dana.give_key(team.sim.issue_key(5.0))
    await dana.send("/alltoken-chat one")
    assert dana.conv.of("stream") and not dana.refusals()
    await set_caps(team.bot.store, user_daily_usd="1.00", own_key_opt_in=["dana"])
    before = sent(team.sim)
    await dana.send("/alltoken-chat two")
    [refused] = dana.refusals()
    assert "your own key (opted in)" in refused.message and sent(team.sim) == before
    assert [r.key_source for r in await ledger(team.bot.store, "dana")] == ["own", "own"]


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cap", "words", "resets"),
    [
        ("user_daily_usd", "your daily cap", 2),
        ("user_monthly_usd", "your monthly cap", 3),
        ("workspace_monthly_usd", "the workspace's monthly budget", 3),
    ],
)
async def test_each_cap_refuses_before_any_backend_request(
    team: Setup, cap: str, words: str, resets: int
) -> None:
    await set_caps(team.bot.store, **{cap: "1.00"})
    # The workspace cap is spent by someone else; a user cap by bob himself.
    await spent_already(team.bot.store, "carol" if cap.startswith("workspace") else "bob", "1.00")
    bob = Member(team.bot, "bob")
    before = sent(team.sim)
    await bob.send("/alltoken-chat hello")
    assert sent(team.sim) == before and not bob.conv.of("stream")  # nothing was sent
    [refused] = bob.refusals()
    assert words in refused.message and "$1.00" in refused.message
    reset = period_bounds(datetime.now(UTC))[resets].strftime("%Y-%m-%d %H:%M UTC")
    assert refused.hint is not None and reset in refused.hint
    assert f"`{BOSS}`" in refused.hint and f"`{HELPER}`" in refused.hint  # whom to ask
    [audit] = await team.bot.store.list_audit(bob.owner, 1)
    assert (audit.command, audit.outcome, audit.detail) == ("chat", "denied", "budget_exceeded")
    assert len(await ledger(team.bot.store, "bob")) == (0 if cap.startswith("workspace") else 1)


async def test_a_refused_video_submits_nothing_and_starts_no_job(team: Setup) -> None:
    await set_caps(team.bot.store, user_daily_usd="0.05")
    bob = Member(team.bot, "bob")
    await bob.send("/alltoken-video waves on a rock")
    assert bob.refusals() and team.sim.stats.video_submissions == 0
    assert team.sim.stats.requests_to("POST", "/v1/videos/generations") == 0
    assert await team.bot.store.jobs_for(bob.owner) == []


# --- notices -------------------------------------------------------------------------------------


async def test_the_user_hears_once_when_passing_80_percent_of_a_cap(team: Setup) -> None:
    await set_caps(team.bot.store, user_daily_usd="1.00")
    await spent_already(team.bot.store, "bob", "0.799")
    bob = Member(team.bot, "bob")
    await bob.send("/alltoken-chat first")
    await bob.send("/alltoken-chat second")
    assert len(bob.conv.of("stream")) == 2
    [notice] = [n for n in bob.notices() if "80 %" in n]
    assert "your daily cap" in notice and "$1.00" in notice and "UTC" in notice
    assert team.recorder.dms == {}  # a user cap is the user's business


async def test_admins_hear_by_dm_when_the_workspace_budget_passes_80_and_100(
    team: Setup,
) -> None:
    await set_caps(team.bot.store, workspace_monthly_usd="1.00")
    await spent_already(team.bot.store, "carol", "0.799")
    bob = Member(team.bot, "bob")
    await bob.send("/alltoken-chat first")
    await bob.send("/alltoken-chat second")
    for admin in (BOSS, HELPER):
        [dm] = team.recorder.dm_texts(admin)
        assert "passed 80 %" in dm and "$1.00" in dm
    assert not any("80 %" in n for n in bob.notices())  # the member is not told
    await spent_already(team.bot.store, "carol", "0.20")
    await bob.send("/alltoken-chat third")  # refused: the budget is spent
    assert bob.refusals()
    for admin in (BOSS, HELPER):
        assert len(team.recorder.dm_texts(admin)) == 2
        assert "is spent" in team.recorder.dm_texts(admin)[-1]
    notes = [e for e in await team.bot.store.list_audit(None, 50) if "notice" in e.command]
    assert [(e.command, e.outcome) for e in notes] == [("tokenbot.budget.notice", "notified")] * 2


async def test_an_admin_notice_goes_out_once_across_replicas(
    shared_db: SharedDatabase, sim: AllTokenSim
) -> None:
    async with (
        replica(shared_db, "a", sim) as first,
        replica(shared_db, "b", sim) as second,
    ):
        recorders = [wire(first), wire(second)]
        await first.store.put_workspace_key("slack", WS, "alltoken", sim.issue_key(5.0))
        await first.store.set_policy("slack", WS, "admins", [HELPER], BOSS)
        await set_caps(first.store, workspace_monthly_usd="1.00")
        await spent_already(first.store, "carol", "0.799")
        members = [Member(first, "bob"), Member(second, "erin")]
        await asyncio.gather(*(m.send("/alltoken-chat hi") for m in members))
        assert all(m.conv.of("stream") for m in members)
        dms = [t for r in recorders for t in r.dm_texts(HELPER)]
        assert len(dms) == 1 and "passed 80 %" in dms[0]


# --- long jobs -----------------------------------------------------------------------------------


async def test_twenty_concurrent_videos_start_only_as_many_as_the_cap_allows(
    shared_db: SharedDatabase, sim: AllTokenSim
) -> None:
    async with (
        replica(shared_db, "a", sim) as first,
        replica(shared_db, "b", sim) as second,
    ):
        for bot in (first, second):
            wire(bot)
        await first.store.put_workspace_key("slack", WS, "alltoken", sim.issue_key(10.0))
        await set_caps(first.store, workspace_monthly_usd="0.50")
        bots = (first, second)
        members = [Member(bots[i % 2], f"u{i}") for i in range(20)]
        await asyncio.gather(*(m.send("/alltoken-video a wave breaking") for m in members))
        assert all([await b.jobs.wait_idle(30) for b in bots])
        started = 5  # $0.50 / $0.10 a video
        assert sim.stats.video_submissions == started
        # (The members of one replica share its channel's conversation.)
        assert sum(len(m.refusals()) for m in members[:2]) == 20 - started
        rows = await ledger(first.store)
        assert len(rows) == started
        assert {(r.command, r.cost_usd, r.cost_source, r.key_source) for r in rows} == {
            ("video", VIDEO_ESTIMATE, "estimate", "workspace")
        }
        # Every hold was settled: what counts is exactly the ledger.
        assert (await counted(first.store, "u0")).workspace_month_usd == Decimal("0.50")


async def test_a_failed_image_releases_its_hold(team: Setup) -> None:
    await set_caps(team.bot.store, user_daily_usd="1.00")
    bob = Member(team.bot, "bob")
    await bob.send("/alltoken-image something forbidden [[fail]]")
    assert await team.bot.jobs.wait_idle(10)
    [job] = await team.bot.store.jobs_for(bob.owner)
    assert job.status == "failed" and job.state["spend_hold"]
    assert job.state["key_source"] == "workspace"
    assert await team.bot.store.get_spend_hold(job.state["spend_hold"]) is None
    assert (await counted(team.bot.store, "bob")).user_day_usd == 0
    assert await ledger(team.bot.store, "bob") == []


async def test_a_cancelled_video_releases_its_hold(team: Setup) -> None:
    team.sim.config.video_seconds = 30.0  # long enough to click Cancel
    await set_caps(team.bot.store, user_daily_usd="1.00")
    bob = Member(team.bot, "bob")
    await bob.send("/alltoken-video a slow sunrise")
    [job] = await team.bot.store.jobs_for(bob.owner)
    hold = job.state["spend_hold"]
    assert (await counted(team.bot.store, "bob")).user_day_usd == VIDEO_ESTIMATE

    async def submitted() -> bool:
        fresh = await team.bot.store.get_job(job.id)
        return bool(fresh and fresh.state.get("task_id"))

    for _ in range(200):
        if await submitted():
            break
        await asyncio.sleep(0.05)
    await team.bot.handle_action(bob.inbound(""), CANCEL_ACTION, job.id, bob.conv)
    assert team.sim.stats.video_cancellations == 1  # cancelled at AllToken with the workspace key
    assert await team.bot.store.get_spend_hold(hold) is None
    assert (await counted(team.bot.store, "bob")).user_day_usd == 0
    assert await ledger(team.bot.store, "bob") == []


# --- the ledger's cost source per backend ----------------------------------------------------------


async def test_an_image_on_an_own_key_is_ledgered_as_the_catalog_estimate(team: Setup) -> None:
    dana = Member(team.bot, "dana")
    await dana.give_key(team.sim.issue_key(5.0))
    await dana.send("/alltoken-image a red kite")
    assert await team.bot.jobs.wait_idle(10)
    [row] = await ledger(team.bot.store, "dana")
    # AllToken reports no media price: the catalog's (gpt-image-2, $0.042 an image) is used.
    assert (row.command, row.cost_source, row.key_source) == ("image", "estimate", "own")
    assert row.cost_usd == Decimal("0.042") and row.request_id
    [usage] = await team.bot.store.list_usage(dana.owner)
    assert usage.request_id == row.request_id  # the usage row, written with it


@pytest.fixture
async def om() -> AsyncIterator[OpenMarlinSim]:
    s = OpenMarlinSim(OpenMarlinSimConfig(task_queue_s=0.1, task_run_s=0.2, tokens_per_second=0))
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def test_openmarlin_runs_and_tasks_are_ledgered_from_their_settlement(
    tmp_path: Path, sim: AllTokenSim, om: OpenMarlinSim
) -> None:
    settings = make_settings(tmp_path / "data", sim, openmarlin_server_url=om.base_url)
    families = [openmarlin_family(OpenMarlinTiming(poll_s=0.05)), tokenbot_family()]
    bot = await TokenBot.create(settings, families=families)
    wire(bot)
    try:
        await bot.store.put_workspace_key("slack", WS, "openmarlin", om.issue_key(100))
        await set_caps(bot.store, workspace_monthly_usd="50.00")
        bob = Member(bot, "bob")
        await bob.send("use openmarlin to say hello")
        await bob.send("use openmarlin to generate a video of a lighthouse")
        assert await bot.jobs.wait_idle(10)
        rows = {r.command: r for r in await ledger(bot.store, "bob")}
        assert {c: (r.cost_usd, r.cost_source, r.key_source) for c, r in rows.items()} == {
            "execute": (om.config.execution_cost, "settlement", "workspace"),
            "task": (om.config.task_cost, "settlement", "workspace"),
        }
        assert (await counted(bot.store, "bob")).workspace_month_usd == (
            om.config.execution_cost + om.config.task_cost
        )
    finally:
        await bot.aclose()


async def test_a_fallback_answer_is_ledgered_as_openclaw_tokens_charge(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    oc: OpenClawTokenSim
    async with running_sim() as oc, running_bot(tmp_path / "data", sim, oc) as bot:
        erin = await signed_in(bot, "erin")
        await erin.give_key(sim.issue_key(0.0))
        await erin.send("/openclaw-token integrate")
        await erin.send("/alltoken-chat claude-sonnet-4-6 explain tides")
        [key] = oc.account().keys.values()
        since = period_bounds(datetime.now(UTC))[1]
        [row] = await bot.store.ledger_rows("console", WS, user="erin", since=since)
        assert (row.service, row.cost_source, row.key_source) == ("openclaw_token", "charge", "own")
        assert row.cost_usd == key.usage.normalize()
