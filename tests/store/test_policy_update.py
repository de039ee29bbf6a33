"""Policy changes are read-modify-write in one transaction under the workspace lock: concurrent
changes from two replicas (two Store instances on one database, or two bots on one PostgreSQL)
all land, where reading a value and writing it whole kept only the last."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bot.core.app import TokenBot
from bot.core.messages import Destination
from bot.sim.alltoken.server import AllTokenSim
from bot.store import SecretBox, Store
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation
from tests.store.conftest import BackendUnderTest

USERS = [f"U{i:02d}" for i in range(20)]


def _opt_in(user: str) -> Any:
    """The own-key opt-in change as `/tokenbot budget own-keys on` makes it."""

    def change(budget: Any) -> dict[str, Any]:
        budget = budget if isinstance(budget, dict) else {}
        users = list(budget.get("own_key_opt_in") or [])
        return {**budget, "own_key_opt_in": [*users, user] if user not in users else users}

    return change


async def test_twenty_concurrent_opt_ins_from_two_replicas_all_land(
    two: tuple[Store, Store], backend: BackendUnderTest, box: SecretBox
) -> None:
    a, b = two
    await a.set_policy("slack", "T1", "budget", {"workspace_monthly_usd": "100.00"}, "U_ADMIN")
    results = await asyncio.gather(
        *(
            store.update_policy("slack", "T1", "budget", _opt_in(user), user)
            for store, user in zip([a, b] * 10, USERS, strict=True)
        )
    )
    assert all(user in r["own_key_opt_in"] for r, user in zip(results, USERS, strict=True))
    async with await backend.open(box) as fresh:
        budget = (await fresh.get_policy("slack", "T1"))["budget"]
    assert sorted(budget["own_key_opt_in"]) == USERS
    assert budget["workspace_monthly_usd"] == "100.00"  # the rest of the value is kept


async def test_reading_then_setting_whole_would_lose_them(
    two: tuple[Store, Store], backend: BackendUnderTest, box: SecretBox
) -> None:
    """The control: the old read-then-`set_policy` keeps fewer than twenty (so the test above
    is one that fails without the single transaction)."""
    a, b = two

    async def old_way(store: Store, user: str) -> None:
        budget = (await store.get_policy("slack", "T1")).get("budget")
        await asyncio.sleep(0)  # two admins' commands interleave here
        await store.set_policy("slack", "T1", "budget", _opt_in(user)(budget), user)

    await asyncio.gather(
        *(old_way(store, user) for store, user in zip([a, b] * 10, USERS, strict=True))
    )
    async with await backend.open(box) as fresh:
        budget = (await fresh.get_policy("slack", "T1"))["budget"]
    assert len(budget["own_key_opt_in"]) < len(USERS)


async def test_a_change_sees_the_stored_value_and_may_write_nothing(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, b = two
    await a.set_policy("slack", "T1", "admins", ["U_A"], "U_ROOT")
    seen: list[Any] = []

    def add_bob(value: Any) -> list[str]:
        seen.append(value)
        return [*value, "U_BOB"]

    assert await b.update_policy("slack", "T1", "admins", add_bob, "U_A") == ["U_A", "U_BOB"]
    assert seen == [["U_A"]]
    # Unchanged: nothing written (who changed it last stays who did).
    assert await a.update_policy("slack", "T1", "admins", lambda v: v, "U_X") == ["U_A", "U_BOB"]
    assert await backend.raw("SELECT updated_by FROM workspace_policy") == [("U_A",)]
    # A change that raises writes nothing.

    def refuse(value: Any) -> Any:
        raise LookupError("no")

    with pytest.raises(LookupError):
        await a.update_policy("slack", "T1", "admins", refuse, "U_X")
    assert (await b.get_policy("slack", "T1"))["admins"] == ["U_A", "U_BOB"]
    # An unset key's change gets None.
    assert await a.update_policy("slack", "T1", "channels", lambda v: v or ["C1"], "U_A") == ["C1"]


# --- through the bot: two bots on one PostgreSQL ------------------------------------------------


@asynccontextmanager
async def two_bots(
    tmp_path: Path, sim: AllTokenSim, postgres_url: str
) -> AsyncIterator[tuple[TokenBot, TokenBot]]:
    """Two replicas (own data dirs, one database, one master key)."""
    master = Fernet.generate_key().decode()
    made: list[TokenBot] = []
    try:
        for name in ("a", "b"):
            settings = make_settings(
                tmp_path / name,
                sim,
                database_url=postgres_url,
                master_key=master,
                admins="slack:UBOSS,slack:UOTHER",
                allow_new_store=True,
            )
            bot = await TokenBot.create(settings)
            conversations: dict[str, RecordingConversation] = {}

            def factory(
                dest: Destination, conversations: dict[str, RecordingConversation] = conversations
            ) -> RecordingConversation:
                return conversations.setdefault(dest.conversation_key, RecordingConversation(dest))

            bot.register_platform("slack", factory)
            bot.test_conversations = conversations  # type: ignore[attr-defined]
            made.append(bot)
        yield made[0], made[1]
    finally:
        for bot in reversed(made):
            await bot.aclose()


@pytest.fixture
async def bots(
    tmp_path: Path, sim: AllTokenSim, postgres_url: str
) -> AsyncIterator[tuple[TokenBot, TokenBot]]:
    """Two bots on one PostgreSQL."""
    async with two_bots(tmp_path, sim, postgres_url) as pair:
        yield pair


def member(bot: TokenBot, user: str) -> Chat:
    """A Slack member typing in channel C1 (not a DM)."""
    chat = Chat(bot, user, channel="C1", platform="slack")
    chat.inbound_proto = chat.inbound_proto.model_copy(update={"is_direct": False})
    return chat


async def test_members_opting_in_at_once_on_two_replicas_all_land(
    bots: tuple[TokenBot, TokenBot],
) -> None:
    a, b = bots
    await asyncio.gather(
        *(
            member(bot, user).send("/tokenbot budget own-keys on")
            for bot, user in zip([a, b] * 10, USERS, strict=True)
        ),
        member(a, "UBOSS").send("/tokenbot admin add <@UCAROL|carol>"),
        member(b, "UOTHER").send("/tokenbot admin add <@UDAVE|dave>"),
    )
    policy = await a.store.get_policy("slack", "w1")
    assert sorted(policy["budget"]["own_key_opt_in"]) == USERS
    assert sorted(policy["admins"]) == ["UCAROL", "UDAVE"]
