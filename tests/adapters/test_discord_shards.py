"""DISCORD_SHARD_IDS / DISCORD_SHARD_COUNT: each replica identifies only for its own shards."""

from __future__ import annotations

from pathlib import Path

import discord
import pytest

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.runner import shard_options
from bot.core.app import TokenBot
from bot.core.settings import Settings
from bot.sim.alltoken.server import AllTokenSim
from tests.fakes.discord import FakeDiscord, discord_world


def shards_identified(fake: FakeDiscord) -> list[list[int] | None]:
    """The `shard` field of every IDENTIFY the fake gateway received, in order."""
    return [g["d"].get("shard") for g in fake.gateway_log if g["op"] == 2]


async def test_one_shard_id_identifies_as_that_shard_and_answers(
    sim: AllTokenSim, tmp_path: Path
) -> None:
    fake = FakeDiscord()
    async with discord_world(
        sim, tmp_path / "data", fake=fake, discord_shard_ids="1", discord_shard_count=2
    ) as w:
        client = w.runner.client
        assert not isinstance(client, discord.AutoShardedClient)
        assert (client.shard_id, client.shard_count) == (1, 2)
        assert shards_identified(fake) == [[1, 2]]
        _, channel = fake.add_guild(shard=1, shard_count=2)  # only shard 1's guilds reach it
        i = await fake.slash("alltoken-help", channel_id=channel)
        await fake.wait_until(
            lambda: "/alltoken-chat" in (fake.original(i) or {}).get("content", ""), what="slash"
        )


async def test_several_shard_ids_open_one_connection_each(sim: AllTokenSim, tmp_path: Path) -> None:
    fake = FakeDiscord()
    async with discord_world(
        sim, tmp_path / "data", fake=fake, discord_shard_ids="0,2", discord_shard_count=3
    ) as w:
        client = w.runner.client
        assert isinstance(client, discord.AutoShardedClient)
        assert (client.shard_ids, client.shard_count) == ([0, 2], 3)
        assert shards_identified(fake) == [[0, 3], [2, 3]]


async def test_unset_keeps_one_unsharded_connection(sim: AllTokenSim, tmp_path: Path) -> None:
    fake = FakeDiscord()
    async with discord_world(sim, tmp_path / "data", fake=fake) as w:
        client = w.runner.client
        assert not isinstance(client, discord.AutoShardedClient)
        assert (client.shard_id, client.shard_count) == (None, None)
        assert shards_identified(fake) == [None]


@pytest.mark.parametrize(
    ("ids", "count", "expected"),
    [
        (None, None, {}),
        ("3", 4, {"shard_id": 3, "shard_count": 4}),
        ("0, 1", 4, {"shard_ids": [0, 1], "shard_count": 4}),
        (None, 2, {"shard_ids": [0, 1], "shard_count": 2}),
        (None, 1, {"shard_id": 0, "shard_count": 1}),
    ],
)
def test_shard_options_from_settings(
    tmp_path: Path, ids: str | None, count: int | None, expected: dict[str, object]
) -> None:
    settings = Settings(data_dir=tmp_path, discord_shard_ids=ids, discord_shard_count=count)
    assert shard_options(settings) == expected


async def test_the_rebuilt_client_keeps_its_shards(bot: TokenBot) -> None:
    # After Discord refuses the content intent the client is rebuilt: still the same shards.
    adapter = DiscordAdapter(bot, client_options={"shard_ids": [1, 3], "shard_count": 4})
    rebuilt = adapter.rebuild_client(discord.Intents.default())
    assert isinstance(rebuilt, discord.AutoShardedClient)
    assert (rebuilt.shard_ids, rebuilt.shard_count) == ([1, 3], 4)


def test_shard_settings_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISCORD_SHARD_IDS", " 0, 2")
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "3")
    settings = Settings(data_dir=tmp_path)
    assert (settings.discord_shard_ids, settings.discord_shard_count) == ((0, 2), 3)
    monkeypatch.setenv("DISCORD_SHARD_IDS", "")
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "")
    settings = Settings(data_dir=tmp_path)
    assert (settings.discord_shard_ids, settings.discord_shard_count) == (None, None)


@pytest.mark.parametrize(
    ("ids", "count", "says"),
    [
        ("0,1", None, "needs DISCORD_SHARD_COUNT"),
        ("0,x", 2, "comma-separated shard numbers"),
        ("2", 2, "from 0 to 1"),
        ("1,1", 2, "distinct"),
    ],
)
def test_bad_shard_settings_are_refused(
    tmp_path: Path, ids: str, count: int | None, says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        Settings(data_dir=tmp_path, discord_shard_ids=ids, discord_shard_count=count)
