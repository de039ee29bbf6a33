"""Commands sent to a `Cluster`, one conversation each, and their results counted in the fakes.

Every command goes to a channel of its own, so what the fakes hold for that channel is that
command's result: `Traffic.missing()` lists the commands not answered yet and
`Traffic.doubled()` those answered more than once (or with an error).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from bot.backends.openclaw_token.confirm import CONFIRM_ACTION
from tests.fakes.discord import FakeInteraction
from tests.replicas.cluster import Cluster

Kind = Literal["chat", "mention", "search", "image", "video", "task", "buy"]
# What only the finished result of each kind of command shows.
MARKERS: dict[str, str] = {
    "chat": "You asked",
    "mention": "You asked",
    "search": "Searched the web",
    "image": "Image ready",
    "video": "Video ready",
    "task": "succeeded",
    "buy": "Bought $",
}
LONG_KINDS = frozenset({"image", "video", "task"})
_SLACK_COMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("/alltoken-chat", "hello number {n}"),
    "search": ("/alltoken-search", "news about {n}"),
    "image": ("/alltoken-image", "a lighthouse number {n}"),
    "video": ("/alltoken-video", "waves on a pier {n}"),
    "task": ("/openmarlin", "generate a video of plane {n}"),
    "buy": ("/openclaw-token", "credits buy --amount 5"),
}
_DISCORD_COMMANDS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "chat": ("alltoken-chat", None, {"prompt": "hello number {n}"}),
    "search": ("alltoken-search", None, {"query": "news about {n}"}),
    "image": ("alltoken-image", None, {"prompt": "a lighthouse number {n}"}),
    "video": ("alltoken-video", None, {"prompt": "waves on a pier {n}"}),
    "task": ("openmarlin", "task start", {"prompt": "plane {n}"}),
    "buy": ("openclaw-token", "credits buy", {"amount": "5"}),
}
_ERRORS = ("❌", "internal_error", "Something went wrong")


@dataclass
class Sent:
    """One command: where it went and where its result must appear."""

    n: int
    platform: Literal["slack", "discord"]
    kind: str
    channel: str  # Slack channel id, or the Discord channel id as text
    user: str
    shard: int | None = None
    interaction: FakeInteraction | None = None
    discord_user: dict[str, Any] | None = None
    retried: bool = False
    clicks: int = 0


class Traffic:
    """Sends commands through a cluster and counts each one's result in the fakes."""

    def __init__(self, cluster: Cluster, *, concurrency: int = 16) -> None:
        self.cluster = cluster
        self.sent: list[Sent] = []
        self._numbers = itertools.count()
        self._gate = asyncio.Semaphore(concurrency)

    # --- sending -------------------------------------------------------------------------

    async def slack(self, kind: str, user: str, *, retry_on_other: bool = False) -> Sent:
        """A Slack slash command (or @mention, `kind="mention"`), round robin over replicas.

        `retry_on_other`: a mention is delivered again as Slack's retry, to another replica.
        """
        n = next(self._numbers)
        sent = Sent(n, "slack", kind, f"C{n:06d}", user, retried=retry_on_other)
        self.sent.append(sent)
        c = self.cluster
        async with self._gate:
            if kind == "mention":
                payload = c.slack_mention(
                    f"alltoken chat hi number {n}", user=user, channel=sent.channel
                )
                first = await c.slack_post("events_api", payload)
                assert first.status == 200, first
                if retry_on_other:
                    other = c.next_replica(other_than=first.replica).name
                    retry = await c.slack_post("events_api", payload, replica=other, retry_num=1)
                    assert retry.status == 200, retry
                return sent
            command, text = _SLACK_COMMANDS[kind]
            delivery = await c.slack_command(
                command, text.format(n=n), user=user, channel=sent.channel
            )
            assert delivery.status == 200, delivery
        return sent

    async def discord(self, kind: str, shard: int, k: int) -> Sent:
        """A Discord slash command by the k-th user in the guild of `shard`."""
        n = next(self._numbers)
        c = self.cluster
        channel = c.discord_channel(shard)
        user = c.discord_user(k)
        sent = Sent(n, "discord", kind, str(channel), user["id"], shard=shard, discord_user=user)
        self.sent.append(sent)
        name, subcommand, options = _DISCORD_COMMANDS[kind]
        filled = {key: v.format(n=n) for key, v in options.items()}
        async with self._gate:
            sent.interaction = await c.discord_slash(
                shard, name, user=user, channel_id=channel, subcommand=subcommand, **filled
            )
        return sent

    async def double_click(self, sent: Sent, timeout: float = 60.0) -> None:
        """Click a purchase's Confirm twice at once: on two replicas (Slack) or twice (Discord)."""
        c = self.cluster
        if sent.platform == "slack":
            token = await self._slack_confirm_token(sent, timeout)
            first = c.next_replica()
            second = c.next_replica(other_than=first.name)
            await asyncio.gather(
                *(
                    c.slack_click(
                        CONFIRM_ACTION, token, user=sent.user, channel=sent.channel, replica=r.name
                    )
                    for r in (first, second)
                )
            )
        else:
            message, custom_id = await self._discord_confirm(sent, timeout)
            user = sent.discord_user
            await asyncio.gather(
                *(c.discord.click(custom_id, int(message["id"]), user=user) for _ in range(2))
            )
        sent.clicks = 2

    async def _slack_confirm_token(self, sent: Sent, timeout: float) -> str:
        fake = self.cluster.slack

        def token() -> str | None:
            for eph in fake.ephemerals:
                if eph.get("channel") != sent.channel:
                    continue
                for block in eph.get("blocks") or []:
                    for element in block.get("elements") or []:
                        if element.get("action_id") == CONFIRM_ACTION:
                            return str(element["value"])
            return None

        await fake.wait_for(lambda _: token() is not None, timeout)
        found = token()
        assert found is not None
        return found

    async def _discord_confirm(self, sent: Sent, timeout: float) -> tuple[dict[str, Any], str]:
        fake = self.cluster.discord
        assert sent.interaction is not None
        interaction = sent.interaction

        def confirm() -> tuple[dict[str, Any], str] | None:
            for message in fake.replies(interaction):
                for row in message.get("components") or []:
                    for button in row.get("components") or []:
                        if CONFIRM_ACTION in str(button.get("custom_id")):
                            return message, str(button["custom_id"])
            return None

        return await fake.wait_until(confirm, timeout, what=f"Confirm of command {sent.n}")

    @staticmethod
    async def all(calls: Iterable[Awaitable[Any]]) -> list[Any]:
        """Run sends concurrently (the gate bounds how many at once)."""
        return list(await asyncio.gather(*calls))

    # --- counting ------------------------------------------------------------------------

    def texts(self, sent: Sent) -> list[str]:
        """Everything the bot shows in the command's channel (messages as they are now)."""
        if sent.platform == "slack":
            fake = self.cluster.slack
            out = [m["text"] + json.dumps(m.get("blocks")) for m in fake.bot_messages(sent.channel)]
            out += [
                e.get("text") or "" for e in fake.ephemerals if e.get("channel") == sent.channel
            ]
            return out
        discord = self.cluster.discord
        bot_id = discord.bot_user["id"]
        return [
            m["content"] + json.dumps(m.get("embeds"))
            for m in discord.messages_in(int(sent.channel))
            if m["author"]["id"] == bot_id
        ]

    def uploads(self, sent: Sent) -> int:
        """Files uploaded into the command's channel."""
        if sent.platform == "slack":
            calls = self.cluster.slack.calls_to("files.completeUploadExternal")
            return sum(
                len(c.args.get("files") or [])
                for c in calls
                if c.args.get("channel_id") == sent.channel
            )
        messages = self.cluster.discord.messages_in(int(sent.channel))
        return sum(len(m["attachments"]) for m in messages)

    def results(self, sent: Sent) -> int:
        """How many times the command's result was delivered."""
        marker = MARKERS[sent.kind]
        return sum(marker in text for text in self.texts(sent))

    def missing(self) -> list[Sent]:
        """Commands whose result has not arrived yet."""
        return [s for s in self.sent if self.results(s) == 0]

    def wrong(self) -> list[tuple[Sent, str]]:
        """Commands answered more than once, with an error, or (images) uploaded other than once."""
        bad: list[tuple[Sent, str]] = []
        for s in self.sent:
            texts = self.texts(s)
            results = self.results(s)
            errors = [t for t in texts if any(e in t for e in _ERRORS)]
            if results != 1:
                bad.append((s, f"{results} results: {texts}"))
            elif errors:
                bad.append((s, f"errors: {errors}"))
            elif s.kind == "image" and self.uploads(s) != 1:
                bad.append((s, f"{self.uploads(s)} uploads"))
        return bad

    def count(self, kind: str, platform: str | None = None) -> int:
        """Commands of one kind sent (on one platform)."""
        return sum(1 for s in self.sent if s.kind == kind and platform in (None, s.platform))

    async def wait_delivered(
        self, timeout: float = 120.0, kinds: Iterable[str] | None = None
    ) -> None:
        """Wait until every command (of `kinds`) has its result; the error lists what is missing."""
        wanted = set(kinds) if kinds is not None else None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            missing = [s for s in self.missing() if wanted is None or s.kind in wanted]
            if not missing:
                return
            if loop.time() > deadline:
                sample = [(s.n, s.platform, s.kind, s.channel, self.texts(s)) for s in missing[:5]]
                raise AssertionError(f"{len(missing)} commands without a result, e.g. {sample}")
            await asyncio.sleep(0.2)

    async def wait_quiet(self, quiet_s: float = 1.5, timeout: float = 60.0) -> None:
        """Wait until neither fake has received a call for `quiet_s` (late duplicates included)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        seen = (-1, -1)
        since = loop.time()
        while loop.time() < deadline:
            now = (len(self.cluster.slack.calls), len(self.cluster.discord.calls))
            if now != seen:
                seen, since = now, loop.time()
            elif loop.time() - since >= quiet_s:
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the fakes kept receiving calls")
