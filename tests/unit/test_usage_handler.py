"""The `/tokenbot usage` handler on a real store: who sees what, the private reply and its files.

The family wiring (`/tokenbot usage` parsed and routed) is tested with the family; here the
handler is called directly with a context from `TokenBot.context`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from PIL import Image as PILImage

from bot.core.app import TokenBot
from bot.core.messages import Failure, Fields, File, Inbound, Notice, Part
from bot.store.models import CostSource, LedgerEntry, Owner, UsageRecord
from bot.teams.spec import UsageQuery
from bot.teams.usage import usage
from tests.fakes.conversation import RecordingConversation

WORKSPACE = "w1"


class FileKeepingConversation(RecordingConversation):
    """Also keeps the bytes of whispered files (the handler removes them once delivered)."""

    def __init__(self, inbound: Inbound) -> None:
        super().__init__(inbound.destination())
        self.files: dict[str, bytes] = {}

    async def whisper(self, parts: Sequence[Part]) -> None:
        for part in parts:
            if isinstance(part, File):
                self.files[part.name] = part.path.read_bytes()
        await super().whisper(parts)


def inbound(user: str) -> Inbound:
    return Inbound(platform="slack", workspace=WORKSPACE, channel="C1", user=user, text="")


async def charge(
    bot: TokenBot,
    user: str,
    cost: str,
    *,
    model: str = "m",
    days_ago: int = 0,
    source: CostSource = "reported",
) -> None:
    owner = Owner(platform="slack", workspace=WORKSPACE, user=user)
    at = datetime.now(UTC) - timedelta(days=days_ago, minutes=1)
    await bot.store.record_charge(
        UsageRecord(
            owner=owner, service="alltoken", command="chat", cost_usd=Decimal(cost), created_at=at
        ),
        LedgerEntry(
            owner=owner,
            service="alltoken",
            command="chat",
            model=model,
            cost_usd=Decimal(cost),
            cost_source=source,
            created_at=at,
        ),
    )


async def run(
    bot: TokenBot, user: str, cmd: UsageQuery
) -> tuple[FileKeepingConversation, str | None]:
    message = inbound(user)
    conversation = FileKeepingConversation(message)
    ctx = bot.context(message, conversation)
    await usage(cmd, ctx)
    return conversation, ctx.outcome


def only_whisper(conversation: RecordingConversation) -> list[Part]:
    assert [e.kind for e in conversation.events] == ["whisper"]  # private, and nothing else
    return conversation.events[0].parts


async def test_a_member_sees_their_own_spend_with_a_chart(bot: TokenBot) -> None:
    await charge(bot, "alice", "0.50", model="gpt-5.4-mini")
    await charge(bot, "alice", "0.25", model="claude", days_ago=2, source="estimate")
    await charge(bot, "bob", "9.00")
    conversation, outcome = await run(bot, "alice", UsageQuery(by="model"))
    parts = only_whisper(conversation)
    [table] = [p for p in parts if isinstance(p, Fields)]
    assert table.title == "Your spend by model, last 7 days (UTC)"
    rows = dict(table.rows)
    assert rows["gpt-5.4-mini"].startswith("$0.50 · 1 call")
    assert "(≈ $0.25 estimated)" in rows["claude"]
    assert rows["Total"].startswith("$0.75 · 2 calls")
    assert "9.00" not in str(parts)  # bob's spend is not in alice's report
    assert any(isinstance(p, Notice) and "estimated from catalog" in p.text for p in parts)
    [chart] = [p for p in parts if isinstance(p, File)]
    assert chart.mime == "image/png" and chart.name.endswith(".png")
    image = PILImage.open(io.BytesIO(conversation.files[chart.name]))
    image.load()
    assert image.info["Title"] == "Your spend by model"
    assert not chart.path.exists()  # removed once delivered
    assert outcome is None


async def test_a_member_is_refused_another_members_and_the_workspace_usage(bot: TokenBot) -> None:
    await charge(bot, "bob", "9.00")
    for who in ("bob", "all"):
        conversation, outcome = await run(bot, "alice", UsageQuery(user=who))
        [failure] = only_whisper(conversation)
        assert isinstance(failure, Failure) and failure.code == "admin_only"
        assert "9.00" not in conversation.text()
        assert outcome == "denied"
    conversation, _ = await run(bot, "alice", UsageQuery(user="alice"))  # naming oneself is fine
    [notice] = only_whisper(conversation)
    assert isinstance(notice, Notice) and "no charged calls" in notice.text


async def test_an_admin_sees_the_workspace_by_user_with_the_csv(bot: TokenBot) -> None:
    await bot.store.set_policy("slack", WORKSPACE, "admins", ["carol"], "carol")
    await bot.store.set_policy(
        "slack",
        WORKSPACE,
        "budget",
        {"user_daily_usd": "2.00", "workspace_monthly_usd": "50"},
        "carol",
    )
    await charge(bot, "alice", "0.50", model='=cmd|"/c calc"!A1')
    await charge(bot, "bob", "1.25", days_ago=1)
    await charge(bot, "bob", "7.00", days_ago=40)  # outside --since 30d
    conversation, outcome = await run(
        bot, "carol", UsageQuery(user="all", by="user", since_days=30, csv=True)
    )
    parts = only_whisper(conversation)
    [table] = [p for p in parts if isinstance(p, Fields)]
    assert table.title == "Workspace spend by user, last 30 days (UTC)"
    assert [label for label, _ in table.rows] == ["bob", "alice", "Total"]
    assert any(isinstance(p, Notice) and "$2.00 a day per member" in p.text for p in parts)
    names = [p.name for p in parts if isinstance(p, File)]
    assert [n.rsplit(".", 1)[1] for n in names] == ["png", "csv"]
    rows = list(csv.DictReader(io.StringIO(conversation.files[names[1]].decode(), newline="")))
    assert [r["user"] for r in rows] == [
        "bob",
        "alice",
    ]  # oldest first; the 40-day-old row left out
    assert rows[1]["model"] == '\'=cmd|"/c calc"!A1'  # shown as text, never run as a formula
    assert outcome is None
    assert list((bot.settings.data_dir / "reports").iterdir()) == []  # nothing kept on disk


async def test_a_members_own_daily_cap_is_the_charts_line(bot: TokenBot) -> None:
    await bot.store.set_policy("slack", WORKSPACE, "budget", {"user_daily_usd": "2.00"}, "carol")
    await charge(bot, "alice", "0.50")
    conversation, _ = await run(bot, "alice", UsageQuery())
    [chart] = [p for p in only_whisper(conversation) if isinstance(p, File)]
    image = PILImage.open(io.BytesIO(conversation.files[chart.name]))
    assert image.info["Title"] == "Your spend by backend"  # --by day stacks by backend
    # The cap is drawn in red: some pixels of the line's colour are there.
    colours = image.convert("RGB").getcolors(maxcolors=1 << 18) or []
    rgb = [colour for _, colour in colours if isinstance(colour, tuple)]
    assert any(abs(r - 0xC0) < 12 and abs(g - 0x39) < 12 and abs(b - 0x2B) < 12 for r, g, b in rgb)


async def test_a_window_in_the_future_is_refused_plainly(bot: TokenBot) -> None:
    later = (datetime.now(UTC) + timedelta(days=3)).date()
    conversation, _ = await run(bot, "alice", UsageQuery(since=later, since_days=None))
    [failure] = only_whisper(conversation)
    assert isinstance(failure, Failure) and failure.code == "bad_window"
    assert "in the future" in failure.message
