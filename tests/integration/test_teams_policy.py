"""Workspace policy over real HTTP: each rule refuses before any backend request, admin changes
are audited, non-admins are refused every admin command, TOKENBOT_ADMINS cannot be removed, and
the channel's default model reaches the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core.app import TokenBot
from bot.core.messages import Destination, Failure, Inbound
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from bot.teams.spec import SPECS
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation

WS = "w1"
BOSS = "UBOSS"  # named by TOKENBOT_ADMINS (on Slack)
ADMIN_EXAMPLES = [example for spec in SPECS if spec.path[1] == "admin" for example in spec.examples]


@pytest.fixture
async def bot(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[TokenBot]:
    settings = make_settings(tmp_path / "data", sim, admins=f"slack:{BOSS}")
    b = await TokenBot.create(settings)
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


class Member(Chat):
    """A Slack member typing in a shared channel (not a DM) unless told otherwise."""

    def __init__(self, bot: TokenBot, user: str, channel: str = "C1", direct: bool = False) -> None:
        super().__init__(bot, user, channel=channel, platform="slack")
        self.inbound_proto = self.inbound_proto.model_copy(update={"is_direct": direct})

    def failures(self) -> list[Failure]:
        return [
            p
            for e in self.conv.events
            if e.kind == "whisper"
            for p in e.parts
            if isinstance(p, Failure)
        ]

    def last_whisper(self) -> str:
        return [e for e in self.conv.events if e.kind == "whisper"][-1].text


def member(bot: TokenBot, user: str, channel: str = "C1", direct: bool = False) -> Member:
    return Member(bot, user, channel, direct)


async def funded(bot: TokenBot, sim: AllTokenSim, user: str, channel: str = "C1") -> Member:
    chat = member(bot, user, channel)
    await chat.give_key(sim.issue_key(10.0))
    return chat


async def policy(bot: TokenBot) -> dict[str, object]:
    return await bot.store.get_policy("slack", WS)


def backend_requests(sim: AllTokenSim) -> int:
    return sum(sim.stats.requests.values())


async def changes(bot: TokenBot, user: str) -> list[str]:
    rows = await bot.store.list_audit(Owner(platform="slack", workspace=WS, user=user), 100)
    return [r.detail or "" for r in rows if r.command == "tokenbot.policy.change"]


# --- admins ------------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ADMIN_EXAMPLES)
async def test_a_non_admin_is_refused_every_admin_command(bot: TokenBot, example: str) -> None:
    mallory = member(bot, "UMAL")
    before = await policy(bot)
    await mallory.send(example)
    [failure] = mallory.failures()
    assert failure.code == "admin_only"
    assert BOSS in (failure.hint or "")  # names who to ask
    assert await policy(bot) == before
    assert not mallory.conv.forms
    assert await bot.store.get_workspace_key("slack", WS, "alltoken") is None
    [row] = await bot.store.list_audit(mallory.owner, 5)
    assert row.outcome == "denied"


async def test_admin_changes_are_audited_and_answered_privately(bot: TokenBot) -> None:
    boss = member(bot, BOSS)
    for text in (
        "/tokenbot admin add <@UCAROL|carol>",
        "/tokenbot admin channels add <#C1|ai>",
        "/tokenbot admin commands alltoken deny video",
        "/tokenbot admin models alltoken allow gpt-5.4-mini",
        "/tokenbot admin channel-model alltoken gpt-5.4-mini",
        "/tokenbot admin budget workspace 100",
        "/tokenbot admin budget user-daily 2.5",
    ):
        await boss.send(text)
    assert not [e for e in boss.conv.events if e.kind == "say"]  # all private
    assert not boss.failures()
    stored = await policy(bot)
    assert stored["admins"] == ["UCAROL"]
    assert stored["channels"] == ["C1"]
    assert stored["commands"] == {"alltoken": ["chat", "image", "search", "models", "cost"]}
    assert stored["models"] == {"alltoken": ["gpt-5.4-mini"]}
    assert stored["channel_models"] == {"C1": {"alltoken": "gpt-5.4-mini"}}
    assert stored["budget"] == {"workspace_monthly_usd": "100.00", "user_daily_usd": "2.50"}
    assert sorted(await changes(bot, BOSS)) == sorted(
        [
            "admins: added UCAROL",
            "channels: added C1",
            "commands alltoken: deny video",
            "models alltoken: allow gpt-5.4-mini",
            "channel model C1 alltoken: gpt-5.4-mini",
            "budget workspace_monthly_usd: $100.00",
            "budget user_daily_usd: $2.50",
        ]
    )


async def test_an_added_admin_may_administer_and_operator_admins_cannot_be_removed(
    bot: TokenBot,
) -> None:
    await member(bot, BOSS).send("/tokenbot admin add <@UCAROL>")
    carol = member(bot, "UCAROL")
    await carol.send("/tokenbot admin remove <@UBOSS>")
    [failure] = carol.failures()
    assert failure.code == "admin_protected" and "TOKENBOT_ADMINS" in failure.message
    await carol.send("/tokenbot admin budget workspace 50")
    assert (await policy(bot))["budget"] == {"workspace_monthly_usd": "50.00"}
    # Carol may remove herself (the operator's admin remains), after which she is refused.
    await carol.send("/tokenbot admin remove <@UCAROL>")
    assert (await policy(bot))["admins"] == []
    await carol.send("/tokenbot admin budget workspace off")
    assert carol.failures()[-1].code == "admin_only"


async def test_the_last_admin_cannot_lock_the_workspace_out(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    b = await TokenBot.create(make_settings(tmp_path / "d2", sim))  # no TOKENBOT_ADMINS
    try:
        b.test_conversations = {}  # type: ignore[attr-defined]
        await b.store.set_policy("slack", WS, "admins", ["UDANA"], "test")
        dana = member(b, "UDANA")
        await dana.send("/tokenbot admin remove <@UDANA>")
        assert dana.failures()[-1].code == "last_admin"
        assert (await b.store.get_policy("slack", WS))["admins"] == ["UDANA"]
    finally:
        await b.aclose()


async def test_discord_mentions_and_typed_options(bot: TokenBot) -> None:
    conv = RecordingConversation(
        Destination(platform="discord", workspace="g1", channel="9", user="42")
    )
    base = Inbound(
        platform="discord", workspace="g1", channel="9", user="42", text="", is_public=False
    )
    # Not an admin on Discord: TOKENBOT_ADMINS names a Slack user only.
    await bot.handle(
        base.model_copy(
            update={
                "command": "/tokenbot",
                "subcommand": "admin add",
                "options": {"user": "<@!77>"},
            }
        ),
        conv,
    )
    assert conv.events[-1].parts[0].code == "admin_only"  # type: ignore[union-attr]
    await bot.store.set_policy("discord", "g1", "admins", ["42"], "test")
    await bot.handle(
        base.model_copy(
            update={
                "command": "/tokenbot",
                "subcommand": "admin add",
                "options": {"user": "<@!77>"},
            }
        ),
        conv,
    )
    await bot.handle(base.model_copy(update={"text": "/tokenbot admin channels add <#555>"}), conv)
    stored = await bot.store.get_policy("discord", "g1")
    assert stored["admins"] == ["42", "77"] and stored["channels"] == ["555"]


# --- rules, each refused before any backend request ---------------------------------------------


async def test_a_channel_not_on_the_list_is_refused_before_any_request(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    await member(bot, BOSS).send("/tokenbot admin channels add <#C1>")
    elsewhere = await funded(bot, sim, "UALICE", channel="C2")
    sim.stats.reset()
    await elsewhere.send("/alltoken-chat hello")
    [failure] = elsewhere.failures()
    assert failure.code == "policy_channel" and "allowed channels" in failure.message
    assert BOSS in (failure.hint or "")
    assert backend_requests(sim) == 0
    [row] = [r for r in await bot.store.list_audit(elsewhere.owner, 5) if r.command == "chat"]
    assert (row.outcome, row.detail) == ("denied", "policy_channel")
    # Help, keys and /tokenbot stay available there and in DMs.
    await elsewhere.send("/alltoken-help")
    await elsewhere.send("/tokenbot policy")
    dm = member(bot, "UALICE", channel="D1", direct=True)
    await dm.send("/tokenbot policy")
    assert "not allowed" in dm.last_whisper()
    await dm.send("/alltoken-chat hello")
    assert dm.failures()[-1].code == "policy_channel"
    assert len(elsewhere.failures()) == 1 and backend_requests(sim) == 0
    # In the listed channel the same command reaches the backend.
    here = await funded(bot, sim, "UBOB", channel="C1")
    await here.send("/alltoken-chat hello")
    assert not here.failures() and sim.stats.chat_completions == 1


async def test_a_denied_command_is_refused_before_any_request(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    await member(bot, BOSS).send("/tokenbot admin commands alltoken deny image video")
    alice = await funded(bot, sim, "UALICE")
    sim.stats.reset()
    await alice.send("/alltoken-image a lighthouse")
    [failure] = alice.failures()
    assert failure.code == "policy_command" and "`image`" in failure.message
    assert backend_requests(sim) == 0 and sim.stats.image_submissions == 0
    await member(bot, BOSS).send("/tokenbot admin commands alltoken reset")
    await alice.send("/alltoken-chat hi")
    assert len(alice.failures()) == 1 and sim.stats.chat_completions == 1


async def test_a_model_not_allowed_is_refused_before_any_request(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    await member(bot, BOSS).send("/tokenbot admin models alltoken allow gpt-5.4-mini")
    alice = await funded(bot, sim, "UALICE")
    sim.stats.reset()
    await alice.send("/alltoken-chat claude-sonnet-4-6 write a haiku")
    [failure] = alice.failures()
    assert failure.code == "policy_model" and "claude-sonnet-4-6" in failure.message
    assert backend_requests(sim) == 0
    await alice.send("/alltoken-chat write a haiku")  # the default model is allowed
    assert len(alice.failures()) == 1 and sim.stats.chat_completions == 1


async def test_the_channel_default_model_is_used_when_a_command_names_none(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    await member(bot, BOSS).send("/tokenbot admin channel-model alltoken claude-sonnet-4-6")
    alice = await funded(bot, sim, "UALICE")
    await alice.send("/alltoken-chat hello there")
    # The simulator answers with the model it was asked for; the usage row records it.
    [usage] = await bot.store.list_usage(alice.owner)
    assert usage.model == "claude-sonnet-4-6"
    # A model named explicitly (even the backend's own default) wins; other channels keep theirs.
    await alice.send("/alltoken-chat gpt-5.4-mini hello again")
    other = await funded(bot, sim, "UBOB", channel="C2")
    await other.send("/alltoken-chat hello")
    models = {u.model for u in await bot.store.list_usage(alice.owner)}
    assert models == {"claude-sonnet-4-6", "gpt-5.4-mini"}
    [theirs] = await bot.store.list_usage(other.owner)
    assert theirs.model == "gpt-5.4-mini"
    await member(bot, BOSS).send("/tokenbot admin channel-model alltoken clear")
    assert (await policy(bot))["channel_models"] == {}


# --- the rest of the family -------------------------------------------------------------------


async def test_help_lists_the_commands(bot: TokenBot) -> None:
    chat = member(bot, "UANY")
    await chat.send("/tokenbot help")
    text = chat.last_whisper()
    for spec in SPECS:
        assert spec.usage in text, spec.usage


async def test_anyone_sees_the_policy_privately(bot: TokenBot) -> None:
    boss = member(bot, BOSS)
    await boss.send("/tokenbot admin models alltoken allow gpt-5.4-mini")
    await boss.send("/tokenbot admin budget user-monthly 20")
    chat = member(bot, "UANY")
    await chat.send("/tokenbot policy")
    text = chat.last_whisper()
    assert BOSS in text and "everywhere" in text and "gpt-5.4-mini" in text and "$20.00" in text
    assert not [e for e in chat.conv.events if e.kind == "say"]


async def test_a_workspace_key_goes_through_the_private_form(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    key = sim.issue_key(5.0)
    boss = member(bot, BOSS)
    await boss.send("/tokenbot admin workspace-key alltoken")
    [form] = boss.conv.forms
    assert [f.name for f in form.fields] == ["key"] and form.fields[0].secret
    assert await bot.submit_form(boss.inbound(""), form.form_id, {"key": key}, boss.conv)
    assert await bot.store.get_workspace_key("slack", WS, "alltoken") == key
    assert any(d.startswith("workspace key alltoken: set") for d in await changes(bot, BOSS))
    assert key not in " ".join(e.text for e in boss.conv.events)
    # Someone else submitting the same form is refused and changes nothing.
    mallory = member(bot, "UMAL")
    assert not await bot.submit_form(
        mallory.inbound(""), form.form_id, {"key": sim.issue_key(1.0)}, mallory.conv
    )
    assert await bot.store.get_workspace_key("slack", WS, "alltoken") == key
    await boss.send("/tokenbot admin workspace-key alltoken clear")
    assert await bot.store.get_workspace_key("slack", WS, "alltoken") is None


async def test_an_openclaw_key_is_never_a_workspace_key(bot: TokenBot) -> None:
    """OpenClaw Token keys manage their owner's account and are never lent: no form that would
    store one for nothing, and the policy view does not list such a key."""
    boss = member(bot, BOSS)
    await boss.send("/tokenbot admin workspace-key openclaw-token")
    [failure] = boss.failures()
    assert failure.code == "usage" and "never lent" in failure.message
    assert "AllToken" in (failure.hint or "") and "OpenMarlin" in (failure.hint or "")
    assert not boss.conv.forms
    assert await changes(bot, BOSS) == []
    await boss.send("/tokenbot admin workspace-key openclaw-token clear")  # still allowed
    assert "There was no OpenClaw Token workspace key" in boss.last_whisper()
    await boss.send("/tokenbot policy")
    view = boss.last_whisper()
    assert "AllToken workspace key" in view and "OpenMarlin workspace key" in view
    assert "OpenClaw Token workspace key" not in view


async def test_own_key_opt_in_is_each_members_own_choice(bot: TokenBot) -> None:
    alice, bob = member(bot, "UALICE"), member(bot, "UBOB")
    await alice.send("/tokenbot budget own-keys on")
    await bob.send("/tokenbot budget own-keys on")
    await alice.send("/tokenbot budget own-keys off")
    assert (await policy(bot))["budget"] == {"own_key_opt_in": ["UBOB"]}
    assert await changes(bot, "UALICE") == [
        "budget own-key opt-in: off",
        "budget own-key opt-in: on",
    ]
