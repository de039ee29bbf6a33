"""Tokens that expire, destinations rebuilt from saved extras, the command tree and its sync."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import aiohttp
import pytest
from discord import app_commands
from pydantic import BaseModel

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.sync import run_sync, sync_commands
from bot.backends.alltoken.family import alltoken_family
from bot.core.app import TokenBot
from bot.core.command_spec import CommandSpec, OptionSpec, OptionValue
from bot.core.context import HandlerContext
from bot.core.family import CommandFamily, Wiring
from bot.core.grammar import ParseState
from bot.core.messages import Destination, FormField, FormRequest, Notice, Text
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.conftest import make_settings
from tests.fakes.discord import EPHEMERAL, LOADING, DiscordWorld, FakeInteraction, discord_world

CHANNEL_EDIT = "/channels/{channel_id}/messages/{message_id}"
CHANNEL_POST = "/channels/{channel_id}/messages"
WEBHOOK = "/webhooks/{application_id}/{token}"


class EchoCommand(BaseModel):
    """What a stand-in family receives: its slash command's text, untouched."""

    kind: Literal["echo"] = "echo"
    family: str
    text: str


def stand_in_family(slash: str, specs: tuple[CommandSpec, ...] = ()) -> CommandFamily:
    """A family with one slash command: free text, or (with specs) typed options as values."""
    name = slash.lstrip("/")

    def parse(text: str, ctx: ParseState) -> BaseModel | None:
        return None

    def parse_slash(command: str, text: str, ctx: ParseState) -> BaseModel | None:
        return EchoCommand(family=name, text=text) if command.lstrip("/") == name else None

    def parse_options(
        spec: CommandSpec, values: Mapping[str, OptionValue], ctx: ParseState
    ) -> BaseModel | None:
        if spec.path[1:] == ("auth", "login"):
            return EchoCommand(family=name, text="login")
        return EchoCommand(family=name, text=json.dumps([spec.path, dict(values)]))

    async def handle(cmd: EchoCommand, ctx: HandlerContext) -> None:
        if cmd.text == "dm":  # answers only by direct message
            await ctx.conversation.direct([Text(markdown="a private link")])
            return
        if cmd.text == "quiet":  # says nothing visible at all
            return
        if cmd.text == "login":  # like `/openclaw-token auth login --email`: a private form
            await ctx.conversation.request_form(
                FormRequest(
                    form_id=f"{name}.login",
                    title="Sign in",
                    fields=[FormField(name="password", label="Password")],
                )
            )
            return
        await ctx.conversation.say([Text(markdown=f"{cmd.family} got: {cmd.text}")])

    async def login(ctx: HandlerContext, values: dict[str, str]) -> bool:
        await ctx.conversation.whisper([Text(markdown=f"{len(values['password'])} characters")])
        return True

    def attach(wiring: Wiring) -> None:
        wiring.forms[f"{name}.login"] = login

    return CommandFamily(
        name=name.replace("-", "_"),
        display_name=name.title(),
        parse=parse,
        parse_slash=parse_slash,
        slash_commands=(slash,),
        handlers={EchoCommand: handle},
        attach=attach,
        specs=specs,
        parse_options=parse_options if specs else None,
    )


def tree_spec(*path: str, options: tuple[OptionSpec, ...] = ()) -> CommandSpec:
    return CommandSpec(
        family="grouped", path=path, usage="/" + " ".join(path), description="d", options=options
    )


GROUPED_SPECS = (
    tree_spec(
        "grouped",
        "keys",
        "create",
        options=(
            OptionSpec(name="name", description="Key name", required=True),
            OptionSpec(name="limit", kind="float", description="USD", min_value=0),
            OptionSpec(name="enable", kind="bool", description="On"),
        ),
    ),
    tree_spec(
        "grouped",
        "auth",
        "login",
        options=(OptionSpec(name="password", description="Password", secret=True),),
    ),
)


@pytest.fixture
async def world(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[DiscordWorld]:
    families = [
        alltoken_family(),
        stand_in_family("/openmarlin"),
        stand_in_family("/openclaw-token"),
    ]
    async with discord_world(sim, tmp_path / "data", families=families) as w:
        owner = Owner(platform="discord", workspace=str(w.fake.guild_id), user=w.fake.alice["id"])
        await w.bot.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
        yield w


def content(message: dict[str, Any] | None) -> str:
    return "" if message is None else str(message["content"])


async def test_a_job_outliving_the_interaction_token_finishes_through_the_channel(
    world: DiscordWorld, sim: AllTokenSim
) -> None:
    fake = world.fake
    sim.config.video_seconds = 0.5
    i = await fake.slash("alltoken-video", prompt="waves")
    await fake.wait_until(lambda: "Video" in content(fake.original(i)), what="progress")
    # Fifteen minutes pass: the adapter's clock jumps and Discord refuses the token.
    world.adapter.clock = lambda: time.time() + 16 * 60
    fake.expire(i)
    webhook_calls = len([c for c in fake.calls if c.route.startswith("/webhooks/")])
    await fake.wait_until(lambda: "Video ready" in content(fake.original(i)), 10, what="done")
    edits = fake.calls_to("PATCH", CHANNEL_EDIT)
    assert edits and edits[-1].params["message_id"] == str(i.original_id)
    assert len([c for c in fake.calls if c.route.startswith("/webhooks/")]) == webhook_calls
    assert (fake.original(i) or {}).get("components") == []


async def test_a_saved_destination_with_an_expired_token_posts_in_the_channel_or_by_dm(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    extras = {
        "interaction_id": "123",
        "application_id": str(fake.app_id),
        "interaction_token": "gone",
        "interaction_expires_at": "0",  # already expired
    }
    destination = Destination(
        platform="discord",
        workspace=str(fake.guild_id),
        channel=str(fake.channel_id),
        user=fake.alice["id"],
        extras=extras,
    )
    conversation = world.bot.conversation_for(destination)
    ref = await conversation.say([Notice(level="success", text="done at last")])
    (post,) = fake.calls_to("POST", CHANNEL_POST)
    assert post.params["channel_id"] == str(fake.channel_id)
    await conversation.edit(ref, [Notice(level="success", text="done, edited")])
    assert content(fake.messages[int(ref.id)]).endswith("done, edited")
    # Where the bot may not post, the user gets a DM.
    fake.forbidden_channels.add(fake.channel_id)
    dm_ref = await world.bot.conversation_for(destination).say([Text(markdown="by DM")])
    assert int(dm_ref.channel) == fake.dm_channels[int(fake.alice["id"])]


async def test_a_message_posted_again_is_edited_there_by_this_and_the_next_process(
    world: DiscordWorld,
) -> None:
    """Someone deleted the message a job keeps editing: the next edit posts a copy, and every
    later edit goes to the latest copy — from this process, and from a restarted one or
    another replica, which know the copy only from the store."""
    fake = world.fake
    destination = Destination(
        platform="discord",
        workspace=str(fake.guild_id),
        channel=str(fake.channel_id),
        user=fake.alice["id"],
    )

    def shown() -> list[str]:
        return [content(m) for m in fake.messages_in(fake.channel_id) if "step" in content(m)]

    conversation = world.bot.conversation_for(destination)
    ref = await conversation.say([Text(markdown="step 1")])
    fake.deleted.add(int(ref.id))
    await conversation.edit(ref, [Text(markdown="step 2")])
    await conversation.edit(ref, [Text(markdown="step 3")])
    assert shown() == ["step 3"] and len(fake.calls_to("POST", CHANNEL_POST)) == 2
    # The copy is deleted too: one more copy, and the edits after it go there.
    [copy] = [m for m in fake.messages_in(fake.channel_id) if "step" in content(m)]
    fake.deleted.add(int(copy["id"]))
    await conversation.edit(ref, [Text(markdown="step 4")])
    await conversation.edit(ref, [Text(markdown="step 5")])
    assert shown() == ["step 5"] and len(fake.calls_to("POST", CHANNEL_POST)) == 3
    # A new process (a restart, another replica) knows nothing of the copies in memory.
    world.adapter.replacements = type(world.adapter.replacements)(
        world.bot.store.message_replacements
    )
    await world.bot.conversation_for(destination).edit(ref, [Text(markdown="step 6")])
    assert shown() == ["step 6"] and len(fake.calls_to("POST", CHANNEL_POST)) == 3


async def test_a_saved_destination_with_a_live_token_uses_the_webhook(world: DiscordWorld) -> None:
    fake = world.fake
    i = await fake.slash("alltoken-help")
    await fake.wait_until(lambda: "/alltoken-chat" in content(fake.original(i)), what="help")
    saved = next(
        c for c in fake.calls if c.route.startswith("/interactions/")
    )  # the defer, to read the token the fake issued
    extras = {
        "interaction_id": str(i.id),
        "application_id": str(fake.app_id),
        "interaction_token": saved.params["token"],
        "interaction_expires_at": str(time.time() + 600),
    }
    destination = Destination(
        platform="discord",
        workspace=str(fake.guild_id),
        channel=str(fake.channel_id),
        user=fake.alice["id"],
        extras=extras,
    )
    # A new adapter process would have no live session: build one from the extras alone.
    world.adapter.sessions = type(world.adapter.sessions)()
    await world.bot.conversation_for(destination).say([Text(markdown="after a restart")])
    assert any("after a restart" in content(m) for m in fake.replies(i))
    assert fake.calls_to("POST", CHANNEL_POST) == []
    # A token Discord refuses falls back to the channel.
    fake.expire(i)
    await world.bot.conversation_for(destination).say([Text(markdown="refused token")])
    assert fake.calls_to("POST", CHANNEL_POST)


async def test_free_text_family_commands_pass_their_text_untouched(world: DiscordWorld) -> None:
    fake = world.fake
    for name, text in (
        ("openmarlin", "run --model=x summarise this"),
        ("openclaw-token", "credits"),
    ):
        i = await fake.slash(name, text=text)

        def settled(i: FakeInteraction = i) -> bool:
            return not int((fake.original(i) or {"flags": LOADING})["flags"]) & LOADING

        await fake.wait_until(settled, what=name)
        assert content(fake.original(i)) == f"{name} got: {text}"
        assert i.response_type == 5


async def test_a_form_asked_for_after_the_defer_opens_from_a_private_button(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    i = await fake.slash("openclaw-token", text="login")
    offer = await fake.wait_until(
        lambda: [m for m in fake.replies(i) if m["components"]], what="the button"
    )
    assert int(offer[0]["flags"]) & EPHEMERAL  # only the requester sees the button
    button = offer[0]["components"][0]["components"][0]
    bob_click = await fake.click(button["custom_id"], int(offer[0]["id"]), user=fake.bob)
    await fake.wait_until(lambda: bob_click.callbacks, what="a refusal")
    assert bob_click.response_type == 4  # someone else's form does not open
    click = await fake.click(button["custom_id"], int(offer[0]["id"]))
    await fake.wait_until(lambda: click.callbacks, what="the modal")
    assert click.response_type == 9
    modal = click.callbacks[0]["data"]
    field_id = modal["components"][0]["component"]["custom_id"]
    submit = await fake.submit_modal(modal["custom_id"], {field_id: "hunter2!"})
    await fake.wait_until(
        lambda: "8 characters" in content(fake.original(submit)), what="the form's answer"
    )
    assert not any("hunter2!" in c.text() for c in fake.calls)


async def test_thinking_never_hangs_when_a_command_answers_by_dm_or_not_at_all(
    world: DiscordWorld,
) -> None:
    fake = world.fake
    world.adapter.settle_after_s = 0.05
    dm = await fake.slash("openmarlin", text="dm")
    await fake.wait_until(lambda: "direct message" in content(fake.original(dm)), what="settled")
    dm_channel = fake.dm_channels[int(fake.alice["id"])]
    assert [m["content"] for m in fake.messages_in(dm_channel)] == ["a private link"]
    quiet = await fake.slash("openmarlin", text="quiet")
    await fake.wait_until(lambda: content(fake.original(quiet)) == "✅ Done.", what="settled")


async def test_thinking_is_not_settled_over_an_answer_another_replica_gave(
    world: DiscordWorld,
) -> None:
    # The command's job was taken over by another replica, which answered in the original
    # response through the interaction's webhook; this replica's "✅ Done." must not
    # overwrite that answer (seen in the replica stress run: an image's "ready" line lost).
    fake = world.fake
    world.adapter.settle_after_s = 1.0
    quiet = await fake.slash("openmarlin", text="quiet")
    await fake.wait_until(lambda: fake.original(quiet) is not None, what="the defer")
    async with aiohttp.ClientSession() as http:
        url = f"{fake.api_url}/webhooks/{fake.app_id}/{quiet.token}/messages/@original"
        async with http.patch(url, json={"content": "answered by the other replica"}) as r:
            assert r.status == 200
    await asyncio.gather(*list(world.adapter._background))
    assert content(fake.original(quiet)) == "answered by the other replica"
    # Left alone, the same quiet command still settles.
    again = await fake.slash("openmarlin", text="quiet")
    await fake.wait_until(lambda: content(fake.original(again)) == "✅ Done.", what="settled")


def _leaf(
    tree: app_commands.CommandTree, spec: CommandSpec
) -> app_commands.Command[Any, ..., None]:
    """The tree's (sub)command for a spec: Discord nests at most command > group > subcommand."""
    entry: Any = tree.get_command(spec.path[0])
    below = list(spec.path[1:])
    if len(below) > 2:
        below = [below[0], "-".join(below[1:])]
    for word in below:
        assert isinstance(entry, app_commands.Group), spec.display
        entry = entry.get_command(word)
    assert isinstance(entry, app_commands.Command), spec.display
    return entry


def runnable_specs(families: list[CommandFamily]) -> list[CommandSpec]:
    """Every spec Discord can run: a one-word spec beside subcommands of its command cannot be."""
    grouped = {s.path[0] for f in families for s in f.specs if len(s.path) > 1}
    return [s for f in families for s in f.specs if len(s.path) > 1 or s.path[0] not in grouped]


async def test_the_tree_has_every_family_command_from_its_specs(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    bot = await TokenBot.create(make_settings(tmp_path / "data", sim))  # this build's families
    try:
        adapter = DiscordAdapter(bot)
        tree = adapter.client.tree
        names = [c.name for c in tree.get_commands()]
        assert names == [s.lstrip("/") for s in bot.slash_commands]
        specs = runnable_specs(bot.families)
        assert specs  # the build's families declare their commands
        for spec in specs:
            command = _leaf(tree, spec)
            shown = [o.name for o in spec.options if not o.secret]
            assert sorted(p.display_name for p in command.parameters) == sorted(shown)
        video = tree.get_command("alltoken-video")
        assert isinstance(video, app_commands.Command)
        duration = next(p for p in video.parameters if p.display_name == "duration")
        assert (duration.min_value, duration.max_value) == (-1, 60)
        key = tree.get_command("alltoken-key")
        assert isinstance(key, app_commands.Command)
        assert [p.display_name for p in key.parameters] == [
            "action"
        ]  # the key itself: a private form
        await adapter.client.close()
    finally:
        await bot.aclose()


@pytest.fixture
async def grouped(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[DiscordWorld]:
    families = [alltoken_family(), stand_in_family("/grouped", GROUPED_SPECS)]
    async with discord_world(sim, tmp_path / "data", families=families) as w:
        yield w


async def test_subcommand_options_reach_the_family_as_typed_values(grouped: DiscordWorld) -> None:
    fake = grouped.fake
    i = await fake.slash(
        "grouped", subcommand="keys create", name="ci --limit=5", limit=2.5, enable=True
    )
    await fake.wait_until(lambda: "got:" in content(fake.original(i)), what="the answer")
    path, values = json.loads(content(fake.original(i)).split("got: ", 1)[1])
    assert path == ["grouped", "keys", "create"]
    assert values == {"name": "ci --limit=5", "limit": 2.5, "enable": True}
    assert i.response_type == 5  # deferred: nothing here asks for a secret


async def test_a_command_with_a_secret_option_opens_its_form_as_the_first_answer(
    grouped: DiscordWorld,
) -> None:
    fake = grouped.fake
    i = await fake.slash("grouped", subcommand="auth login")
    await fake.wait_until(lambda: i.callbacks, what="the modal")
    assert i.response_type == 9  # a modal, not a defer and not a button
    modal = i.callbacks[0]["data"]
    field_id = modal["components"][0]["component"]["custom_id"]
    submit = await fake.submit_modal(modal["custom_id"], {field_id: "hunter2!"})
    await fake.wait_until(
        lambda: "8 characters" in content(fake.original(submit)), what="the form's answer"
    )
    assert not any("hunter2!" in c.text() for c in fake.calls)


async def test_sync_puts_only_when_the_tree_changed(
    world: DiscordWorld, capsys: pytest.CaptureFixture[str]
) -> None:
    fake, settings = world.fake, world.bot.settings
    first = await sync_commands(world.bot, settings)
    assert first.synced and first.commands == 10
    assert [c["name"] for c in fake.commands["global"]][-2:] == ["openmarlin", "openclaw-token"]
    again = await sync_commands(world.bot, settings)
    assert not again.synced and again.digest == first.digest
    assert len(fake.calls_to("PUT", "/applications/{application_id}/commands")) == 1
    guild = await sync_commands(world.bot, settings, guild_id=fake.guild_id)
    assert guild.synced and len(fake.commands[str(fake.guild_id)]) == 10
    # A bot with one family fewer has another tree: it is sent again.
    smaller = await TokenBot.create(settings.model_copy(), [alltoken_family()])
    try:
        changed = await sync_commands(smaller, settings)
    finally:
        await smaller.aclose()
    assert changed.synced and changed.commands == 8 and changed.digest != first.digest
    assert await run_sync(settings, guild_id=None, force=True) == 0
    assert "synced" in capsys.readouterr().out
