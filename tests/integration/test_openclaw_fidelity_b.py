"""tokenbot against an OpenClaw Token simulator as loose as the real server (issue 10, items
3, 4, 5 and 12): revoked keys are not flagged in lists and are "not found" afterwards, the
usage breakdown is a placeholder derived from lifetime usage, the proxy passes its upstream's
cost line through (not OpenClaw Token's charge), a search may come back without sources,
metered usage writes no history row, and auto top-up runs at $0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bot.backends.openclaw_token.render import (
    SeenRefusal,
    placeholder_breakdown,
    usd,
)
from bot.backends.openclaw_token.service import KeyDetail, NewKey, OpenClawTokenService
from bot.core.app import TokenBot
from bot.core.messages import Fields, Notice
from bot.sim.alltoken.models import chat_price_per_m
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.alltoken.sse import ChatPricing
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawTokenSim
from tests.conftest import Chat
from tests.integration.openclaw_support import (
    failures,
    parts_of,
    running_bot,
    running_sim,
    signed_in,
    table,
    texts,
)


@pytest.fixture
async def oc() -> AsyncIterator[OpenClawTokenSim]:
    async with running_sim() as s:
        yield s


@pytest.fixture
async def ocbot(tmp_path: Path, sim: AllTokenSim, oc: OpenClawTokenSim) -> AsyncIterator[TokenBot]:
    async with running_bot(tmp_path / "data", sim, oc) as b:
        yield b


@pytest.fixture
async def demo(ocbot: TokenBot) -> Chat:
    """Alice, signed in to the demo account ($100)."""
    return await signed_in(ocbot)


async def new_key(oc: OpenClawTokenSim, name: str, **kw: object) -> tuple[str, str]:
    """(hash, value) of a key made straight on the simulator's demo account."""
    async with httpx.AsyncClient() as http:
        made = await OpenClawTokenService(http, oc.base_url).create_key(
            DEMO_MGMT_KEY, NewKey(name=name, **kw)
        )
    return made.hash, made.key or ""


async def broke(bot: TokenBot, sim: AllTokenSim, fallback: str = "") -> Chat:
    """Erin: an empty AllToken key, signed in to OpenClaw Token, fallback set via `integrate`."""
    erin = await signed_in(bot, "erin")
    await erin.give_key(sim.issue_key(0.0))
    await erin.send(f"/openclaw-token integrate {fallback}".strip())
    erin.conv.events.clear()
    return erin


def notes(chat: Chat) -> str:
    return "\n".join(n.text for n in parts_of(chat, Notice))


# --- 3. revoked keys -------------------------------------------------------------------------


async def test_the_real_list_has_no_revoked_flag_and_tokenbot_claims_none(
    demo: Chat, oc: OpenClawTokenSim
) -> None:
    gone, _ = await new_key(oc, "gone")
    kept, _ = await new_key(oc, "kept")
    await demo.send(f"/openclaw-token keys revoke {gone} --yes")
    async with httpx.AsyncClient() as http:
        raw = await http.get(
            f"{oc.base_url}/keys",
            params={"include_revoked": "true"},
            headers={"Authorization": f"Bearer {DEMO_MGMT_KEY}"},
        )
    items = raw.json()["data"]["items"]
    assert {i["hash"] for i in items} == {gone, kept}
    assert not any("revoked" in i or "revoked_at" in i for i in items)  # as the real server
    await demo.send("/openclaw-token keys list --include-revoked")
    listed = table(demo, "key(s)")
    assert listed["gone"].endswith("· revoked") and listed["kept"].endswith("· active")
    assert any("does not flag revoked keys" in t for t in texts(demo))
    await demo.send("/openclaw-token keys list --include-revoked --filter active")
    assert list(table(demo, "key(s)")) == ["kept"]


async def test_a_404_after_a_revoke_is_worded_as_a_revoke(demo: Chat, oc: OpenClawTokenSim) -> None:
    h, _ = await new_key(oc, "old", credit_limit=Decimal(5))
    await demo.send(f"/openclaw-token keys revoke {h} --yes")
    for command in (f"keys info {h}", f"keys update {h} --limit 9", f"keys usage {h}"):
        await demo.send(f"/openclaw-token {command}")
        f = failures(demo)[-1]
        assert f.code == "KEY_NOT_FOUND" and f.request_id  # what the real server answers
        assert "old" in f.message and "has been revoked" in f.message
        assert "keys create" in (f.hint or "") and "check the hash" not in (f.hint or "").lower()
    assert oc.key(h).credit_limit == 5  # nothing changed
    await demo.send("/openclaw-token keys info " + "0" * 16)
    f = failures(demo)[-1]
    assert "has no key" in f.message and "revoked" not in f.message
    assert "--include-revoked" in (f.hint or "")


# --- 4. usage figures ------------------------------------------------------------------------


async def test_a_seen_refusal_wins_over_the_servers_placeholder_figures(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim, "--limit 0.01 --limit-reset daily")
    [key] = oc.account().keys.values()
    await erin.send("/alltoken-chat tell me a lot [[tokens=1000]]")  # over the $0.01 limit
    await erin.send("/alltoken-chat and more")
    assert failures(erin)[-1].code == "CREDIT_LIMIT_EXCEEDED"
    await erin.send(f"/openclaw-token keys usage {key.hash}")
    rows = table(erin, f"Usage of {key.name}")
    # The server's daily figure is 15 % of lifetime usage: "$0.00 of $0.01" although refused.
    assert rows["used (daily, server's figure)"] == "$0.00 of $0.01"
    assert rows["left"].startswith("none: the proxy refused this key (CREDIT_LIMIT_EXCEEDED)")
    assert "left (server's figure)" not in rows
    assert "shares of lifetime usage" in rows["note"]
    await erin.send(f"/openclaw-token keys info {key.hash}")
    assert table(erin, f"Key {key.name}")["limit left"].startswith("none: the proxy refused")
    assert "not measurements" in notes(erin)
    await erin.send("/openclaw-token integrate --status")
    assert table(erin, "fallback: on")["limit left"].startswith("none: the proxy refused")
    # Raising the limit makes the old refusal moot; the server's figure is shown again.
    await erin.send(f"/openclaw-token keys update {key.hash} --limit 1")
    await erin.send(f"/openclaw-token keys usage {key.hash}")
    rows = table(erin, f"Usage of {key.name}")
    assert rows["left (server's figure)"] == "$1.00" and "left" not in rows


async def test_an_answer_clears_a_refusal(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim, "--limit 0.01")
    [key] = oc.account().keys.values()
    await erin.send("/alltoken-chat tell me a lot [[tokens=1000]]")
    await erin.send("/alltoken-chat and more")
    info = await ocbot.store.credential_info(erin.owner, "openclaw_proxy")
    assert info and "refused_at" in info.meta
    key.credit_limit = Decimal(5)  # raised elsewhere (the CLI): the next answer goes through
    await erin.send("/alltoken-chat once more")
    info = await ocbot.store.credential_info(erin.owner, "openclaw_proxy")
    assert info and info.meta == {"hash": key.hash, "name": key.name}


def test_a_refusal_holds_only_in_its_period() -> None:
    now = datetime(2026, 5, 13, 12, tzinfo=UTC)
    daily = KeyDetail(hash="a" * 16, name="k", credit_limit=Decimal(1), limit_reset="daily")
    lifetime = KeyDetail(hash="a" * 16, name="k", credit_limit=Decimal(1))
    unlimited = KeyDetail(hash="a" * 16, name="k")
    yesterday = SeenRefusal("CREDIT_LIMIT_EXCEEDED", now - timedelta(days=1))
    this_morning = SeenRefusal("CREDIT_LIMIT_EXCEEDED", now - timedelta(hours=2))
    assert this_morning.holds(daily, now) and not yesterday.holds(daily, now)
    assert yesterday.holds(lifetime, now) and not this_morning.holds(unlimited, now)


def test_the_placeholder_formula_is_recognised() -> None:
    placeholder = KeyDetail(
        hash="a" * 16,
        name="k",
        usage=Decimal("2.5"),
        usage_daily=Decimal("0.38"),
        usage_weekly=Decimal("1.13"),
        usage_monthly=Decimal("2.5"),
        requests_count=250,
    )
    measured = placeholder.model_copy(update={"usage_daily": Decimal("0.10")})
    assert placeholder_breakdown(placeholder) and not placeholder_breakdown(measured)
    assert not placeholder_breakdown(KeyDetail(hash="a" * 16, name="k"))


# --- 5. the fallback's cost ------------------------------------------------------------------


async def test_the_fallback_shows_openclaws_charge_not_the_upstream_cost(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    await erin.send("/alltoken-chat claude-sonnet-4-6 explain tides")
    [key] = oc.account().keys.values()
    [usage] = await ocbot.store.list_usage(erin.owner)
    upstream = ChatPricing(*chat_price_per_m("claude-sonnet-4-6"), usage.prompt_tokens).cost(
        usage.completion_tokens
    )
    assert upstream != key.usage  # the proxy's cost comment is not what the key was charged
    said = notes(erin)
    assert f"OpenClaw Token charged {usd(key.usage)} for this answer" in said
    assert usd(upstream) not in said
    [line] = [n for n in parts_of(erin, Notice) if n.text.startswith("`claude-sonnet-4-6`")]
    assert "$" not in line.text
    assert usage.cost_usd == key.usage
    erin.conv.events.clear()
    await erin.send("/alltoken-cost")
    answer = erin.conv.text()
    assert f"OpenClaw Token charged {usd(key.usage)}" in answer and usd(upstream) not in answer
    assert not parts_of(erin, Fields)  # no AllToken cost table


async def test_an_unknown_charge_is_said_to_be_not_known_yet(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    # Without the management key the key's usage cannot be read before and after.
    await ocbot.store.delete_credential(erin.owner, "openclaw_token")
    await erin.send("/alltoken-chat explain tides")
    [key] = oc.account().keys.values()
    assert key.usage > 0 and "Simulated answer" in erin.conv.of("stream")[0].text
    assert "OpenClaw Token's charge for this answer is not known yet" in notes(erin)
    assert f"keys usage {key.hash}" in notes(erin)
    [usage] = await ocbot.store.list_usage(erin.owner)
    assert usage.cost_usd is None
    erin.conv.events.clear()
    await erin.send("/alltoken-cost")
    assert "charge for it is not known yet" in erin.conv.text() and "$" not in erin.conv.text()


# --- 12. a search fallback without sources ---------------------------------------------------


async def test_a_search_without_sources_says_so(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    await erin.send("/alltoken-search what happened this week")
    assert "Sources:" in erin.conv.text() and "without sources" not in notes(erin)
    oc.upstream = "plain"  # an upstream that ignores enable_search (and sends no cost line)
    erin.conv.events.clear()
    await erin.send("/alltoken-search what happened this week")
    [said] = erin.conv.of("say")
    assert "Searched the web" not in said.text and "https://" not in said.text
    assert "came back without sources" in notes(erin)
    assert "OpenClaw Token charged $" in notes(erin)  # still learned from the key's usage


# --- the simulator's credits, as the real server's -------------------------------------------


async def test_auto_topup_rescues_a_request_at_zero_and_usage_is_not_in_history(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    await erin.send("/openclaw-token credits auto-topup --enable --threshold 5 --amount 25")
    account = oc.account()
    account.total_usage = account.total_credits  # $0 left
    await erin.send("/alltoken-chat hello")
    assert not failures(erin) and "Simulated answer" in erin.conv.of("stream")[0].text
    topups = [t for t in account.history if t.type == "auto_topup"]
    assert [t.amount for t in topups] == [25] and 0 < account.remaining < 25
    assert not [t for t in account.history if t.type == "usage"]
    await erin.send("/openclaw-token credits history --type usage")
    assert "does not list proxy usage" in notes(erin)
    await erin.send("/openclaw-token credits auto-topup")
    assert "at or below" in " ".join(table(erin, "Auto top-up"))


async def test_without_auto_topup_zero_credits_is_refused(
    ocbot: TokenBot, sim: AllTokenSim, oc: OpenClawTokenSim
) -> None:
    erin = await broke(ocbot, sim)
    oc.account().total_usage = oc.account().total_credits
    await erin.send("/alltoken-chat hello")
    assert failures(erin)[-1].code == "INSUFFICIENT_CREDITS"
