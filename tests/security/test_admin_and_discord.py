"""Admin-only commands (TOKENBOT_ADMINS) and a key pasted in public on Discord."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.backends.alltoken.family import alltoken_family
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.conftest import Chat
from tests.fakes.discord import BOT_PERMISSIONS, MANAGE_MESSAGES, FakeDiscord, discord_world
from tests.integration.openclaw_support import failures, running_bot, running_sim

DELETE = "/channels/{channel_id}/messages/{message_id}"
LEAKED = "claw_wsk_" + "Zq9" * 8


async def test_audit_all_is_for_admins_only(
    tmp_path: Path, sim: AllTokenSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_sim() as oc, running_bot(tmp_path / "data", sim, oc) as bot:
        # TOKENBOT_ADMINS from the environment (running_bot passes admins="root" itself).
        monkeypatch.setenv("TOKENBOT_ADMINS", "slack:UADMIN")
        from bot.core.settings import Settings

        assert Settings().admin_ids == frozenset({"slack:UADMIN"})
        bot.settings = bot.settings.model_copy(update={"admins": "root,slack:UADMIN"})
        await Chat(bot, "alice").send("/alltoken-key status")  # something in the audit log
        for user, platform in (("mallory", "console"), ("UADMIN", "discord"), ("UADMIN2", "slack")):
            stranger = Chat(bot, user, platform=platform, channel=f"c-{user}-{platform}")
            await stranger.send("/openclaw-token audit show --all")
            assert failures(stranger)[-1].code == "admin_only", stranger.conv.text()
            assert "alice" not in stranger.conv.text()
        for user, platform in (("root", "console"), ("UADMIN", "slack")):
            admin = Chat(bot, user, platform=platform, channel=f"a-{user}")
            await admin.send("/openclaw-token audit show --all")
            assert not failures(admin) and "alice" in admin.conv.text()
            assert not admin.conv.of("say")  # everyone's operations are shown privately
        denied = [e for e in await bot.store.list_audit(None) if e.outcome == "failed"]
        assert len(denied) == 3


@pytest.mark.parametrize("can_delete", [True, False])
async def test_a_key_pasted_in_public_on_discord(
    sim: AllTokenSim, tmp_path: Path, can_delete: bool
) -> None:
    permissions = BOT_PERMISSIONS if can_delete else BOT_PERMISSIONS & ~MANAGE_MESSAGES
    fake = FakeDiscord(bot_permissions=permissions)
    async with discord_world(
        sim, tmp_path / "data", fake=fake, families=[alltoken_family()]
    ) as world:
        message = await fake.user_message(f"here you go {LEAKED}")
        dm = await fake.wait_until(lambda: fake.dm_channels.get(int(fake.alice["id"])), what="DM")

        def warning() -> list[dict[str, object]]:
            return [
                m
                for m in fake.messages_in(dm)
                if "key_exposed" in json.dumps(m.get("embeds")) + str(m.get("content"))
            ]

        [note] = await fake.wait_until(warning, what="the private note")
        text = json.dumps(note)
        assert "Rotate that key" in text and LEAKED not in text
        deleted = int(message["id"]) in fake.deleted
        assert deleted is can_delete
        assert ("deleted the message" in text) is can_delete
        if not can_delete:
            assert "everyone in this channel" in text
        owner = Owner(platform="discord", workspace=str(fake.guild_id), user=fake.alice["id"])
        for service in ("alltoken", "openmarlin"):
            assert await world.bot.store.get_credential(owner, service) is None
        bot_id = fake.bot_user["id"]
        public = [m for m in fake.messages_in(fake.channel_id) if m["author"]["id"] == bot_id]
        assert not public and LEAKED not in json.dumps([c.json for c in fake.calls])
