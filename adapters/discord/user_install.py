"""tokenbot as a user-installable app: where each command may run, and how replies reach people.

Every command is installable to servers (the `bot` scope) and to a person's account (a *user
install*, `applications.commands` only). A user install lets someone run tokenbot in any server,
in its DM with the bot, or in their own DMs and group DMs ("private channels") — places where the
bot is not a member. There Discord allows nothing but the interaction itself: no channel reads
or posts (403 Missing Access) and, for user-installed apps, at most 5 follow-up messages per
interaction. So replies there go only through the interaction webhook: the original response
(edited as often as needed), ephemeral or public follow-ups within the budget, and a long answer
folded into fewer messages, the rest attached as a file. After the 15-minute token, what is left
goes by DM to the person who installed the app (the one channel a user install may write to).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands

from adapters.discord.outgoing import Outgoing
from adapters.discord.render import MAX_CONTENT, inert
from adapters.discord.session import InteractionSession
from bot.core.command_spec import CommandSpec
from bot.core.messages import Destination, Limits, MessageRef, Part
from bot.core.streaming import StreamSink, ThrottledStream
from bot.core.text_split import split_markdown

log = logging.getLogger(__name__)

# Discord's cap on follow-up messages per interaction of a user-installed app.
FOLLOWUP_LIMIT = 5
# A long answer leaves this many follow-ups unused, for what may still come (a job's result,
# an error report).
FOLD_RESERVE = 1
FOLD_NOTE = (
    "-# The answer continues in the attached file: Discord lets the app send only a few "
    "messages here."
)
FOLD_FILE = "tokenbot-answer.md"

# Keys of Destination.extras, so a job resumed after a restart keeps the same rules.
X_INTERACTION_ONLY = "interaction_only"
X_FOLLOWUP_LIMIT = "followup_limit"


# --- the command tree ---------------------------------------------------------------------


def install_types() -> app_commands.AppInstallationType:
    """Every command: installable to servers and to users."""
    return app_commands.AppInstallationType(guild=True, user=True)


def contexts_for(specs: Sequence[CommandSpec]) -> app_commands.AppCommandContext:
    """Servers and the bot's DM always; private channels unless every spec is private.

    A command whose specs are all private (keys, accounts, billing, the admin audit) manages a
    person's own things: keys belong to a server or to the DMs, purchases ask for a Confirm and
    sign-ins finish in the background, none of which has a place in someone's group DM where
    the bot can never post. Chat, images, videos, OpenMarlin runs and help work everywhere.
    A family without specs (free text) is not known to be private, so it works everywhere too.
    Discord applies contexts per top-level command only (not per subcommand).
    """
    everywhere = not specs or any(not spec.private for spec in specs)
    return app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=everywhere)


def declare(
    entry: app_commands.Command[Any, ..., None] | app_commands.Group, specs: Sequence[CommandSpec]
) -> None:
    """Set a top-level command's install types and contexts (its payload's integration_types
    and contexts)."""
    entry.allowed_installs = install_types()
    entry.allowed_contexts = contexts_for(specs)


# --- where the bot may reply --------------------------------------------------------------


@dataclass(frozen=True)
class Reach:
    """What one interaction allows: only the interaction itself, and how many follow-ups."""

    interaction_only: bool = False
    followup_limit: int | None = None

    @classmethod
    def of(cls, interaction: discord.Interaction) -> Reach:
        """From a live interaction: who authorized it (guild or user install), and where it is."""
        # Not authorized by a server install: Discord's user-install rules apply.
        user_only = interaction.is_user_integration() and not interaction.is_guild_integration()
        guild_id = interaction.guild_id
        outside = bool(interaction.context.private_channel) or (
            guild_id is not None
            and not interaction.is_guild_integration()
            and interaction.client.get_guild(guild_id) is None
        )
        return cls(interaction_only=outside, followup_limit=FOLLOWUP_LIMIT if user_only else None)

    @classmethod
    def from_extras(cls, extras: dict[str, str]) -> Reach:
        """From a saved destination."""
        limit = extras.get(X_FOLLOWUP_LIMIT, "")
        return cls(
            interaction_only=extras.get(X_INTERACTION_ONLY) == "1",
            followup_limit=int(limit) if limit.isdigit() else None,
        )

    def extras(self) -> dict[str, str]:
        """What a Destination carries so later replies keep these rules."""
        out: dict[str, str] = {}
        if self.interaction_only:
            out[X_INTERACTION_ONLY] = "1"
        if self.followup_limit is not None:
            out[X_FOLLOWUP_LIMIT] = str(self.followup_limit)
        return out


class FollowupBudget:
    """The follow-ups one interaction may still send; shared by every conversation using it."""

    def __init__(self, limit: int, *, used: int = 0) -> None:
        self.limit = limit
        self.used = used

    @property
    def left(self) -> int:
        """Follow-ups still allowed."""
        return max(self.limit - self.used, 0)

    def take(self) -> bool:
        """Count one follow-up; False (nothing counted) when none is left."""
        if self.left <= 0:
            return False
        self.used += 1
        return True

    def exhaust(self) -> None:
        """Discord refused a follow-up: it counted more than we did (e.g. before a restart)."""
        self.used = self.limit

    def slots(self, *, original_free: bool) -> int:
        """How many messages a long answer may use now: the free original response, plus the
        follow-ups beyond the reserve; always at least one."""
        return max(self.left - FOLD_RESERVE + (1 if original_free else 0), 1)


_budgets: weakref.WeakKeyDictionary[InteractionSession, FollowupBudget] = (
    weakref.WeakKeyDictionary()
)


def budget_of(session: InteractionSession | None, reach: Reach) -> FollowupBudget | None:
    """The session's follow-up budget (None: unlimited, e.g. a server install)."""
    if session is None or reach.followup_limit is None:
        return None
    budget = _budgets.get(session)
    if budget is None:
        # A session rebuilt after a restart forgot what it sent: assume all but one were used.
        used = 0 if session.interaction is not None else reach.followup_limit - 1
        budget = _budgets[session] = FollowupBudget(reach.followup_limit, used=used)
    return budget


class ReplyRules:
    """How one conversation may reply: the reach of its interaction and its follow-up budget."""

    def __init__(self, reach: Reach, budget: FollowupBudget | None) -> None:
        self.reach = reach
        self.budget = budget

    @property
    def interaction_only(self) -> bool:
        """No channel calls at all: the bot is not a member where the command ran."""
        return self.reach.interaction_only

    def live(self, session: InteractionSession | None, now: float) -> bool:
        """Only the interaction may carry replies, and it still can."""
        return self.interaction_only and session is not None and session.usable(now)

    def channel_may_edit(self, ref: MessageRef) -> bool:
        """Whether a message can be edited through its channel: not ephemeral, not a bare
        "@original", and not a webhook message where the bot can't reach the channel."""
        webhook_only = self.interaction_only and ref.extras.get("via") == "webhook"
        return ref.extras.get("ephemeral") != "1" and ref.id != "@original" and not webhook_only

    def fold(self, chunks: list[Outgoing], session: InteractionSession | None) -> list[Outgoing]:
        """Fewer messages where follow-ups are limited; the rest of the text as a file."""
        if self.budget is None or len(chunks) < 2:
            return chunks
        free = session is not None and session.state in ("unanswered", "deferred")
        return fold_chunks(chunks, self.budget.slots(original_free=free))

    def stream(
        self,
        sink: StreamSink,
        limits: Limits,
        limit: int,
        post: Callable[[Outgoing], Awaitable[MessageRef]],
    ) -> ThrottledStream:
        """The conversation's stream: it edits the original response, then pages within the
        follow-up budget, folding the rest."""
        if self.budget is None:
            return ThrottledStream(sink, limits, limit=limit)
        return FoldedStream(BudgetedSink(sink, self.budget, post), limits, limit=limit)

    def followups(
        self, session: InteractionSession, client: discord.Client, user_id: str
    ) -> discord.Webhook | FollowupGate:
        """What sends this interaction's follow-ups: its webhook, through the budget if any."""
        webhook = session.webhook(client)
        if self.budget is None:
            return webhook
        return FollowupGate(webhook, self.budget, session, client, user_id)


def rules_for(
    session: InteractionSession | None, destination: Destination
) -> tuple[ReplyRules, Destination]:
    """A conversation's rules, and its destination carrying them (for the jobs it starts)."""
    interaction = session.interaction if session is not None else None
    if interaction is None:
        reach = Reach.from_extras(destination.extras)
    else:
        reach = Reach.of(interaction)
        extras = reach.extras()
        if any(destination.extras.get(k) != v for k, v in extras.items()):
            update = {"extras": {**destination.extras, **extras}}
            destination = destination.model_copy(update=update)
    return ReplyRules(reach, budget_of(session, reach)), destination


class FollowupGate:
    """An interaction webhook whose `send` keeps to the follow-up budget.

    With none left (or when Discord refuses one), the message replaces the original response
    instead: edits are not limited. Private text never goes into a public original response:
    that goes by DM to the person (who installed the app, so the bot may write to them).
    """

    def __init__(
        self,
        webhook: discord.Webhook,
        budget: FollowupBudget,
        session: InteractionSession,
        client: discord.Client,
        user_id: str,
    ) -> None:
        self._webhook = webhook
        self._budget = budget
        self._session = session
        self._client = client
        self._user_id = user_id

    async def send(self, *, wait: bool, ephemeral: bool, **kwargs: Any) -> discord.Message:
        """A follow-up while the budget allows it, else the original response (or a DM)."""
        if self._budget.take():
            try:
                return await self._webhook.send(wait=True, ephemeral=ephemeral, **kwargs)
            except discord.HTTPException as exc:
                if exc.status not in (400, 403) or exc.code in (50027, 10015):
                    raise
                log.info("discord: follow-up refused (%s %s)", exc.status, exc.code)
                self._budget.exhaust()
        log.info("discord: no follow-up left for this interaction; using its original response")
        session = self._session
        edit = {k: v for k, v in kwargs.items() if k != "files"}
        edit["attachments"] = kwargs.get("files") or []
        if ephemeral and not session.ephemeral_defer:
            pass  # never private text into a public original response
        elif session.interaction is not None:
            return await session.interaction.edit_original_response(**edit)
        elif session.original_id:
            return await self._webhook.edit_message(int(session.original_id), **edit)
        dm = await self._client.create_dm(discord.Object(int(self._user_id)))
        return await dm.send(**kwargs)


# --- folding a long answer into fewer messages --------------------------------------------


def carrier(text: str, rest: str, *, tail: str = "", base: Outgoing | None = None) -> Outgoing:
    """One message showing the start of `text`, a note, `tail`, and `rest` attached as a file."""
    ending = "\n\n".join(bit for bit in (FOLD_NOTE, tail) if bit)
    room = MAX_CONTENT - len(ending) - 2
    head = split_markdown(text, room)[0] if text.strip() and room > 0 else ""
    content = f"{head}\n\n{ending}" if head else ending
    base = base or Outgoing()
    attachment = (rest.encode("utf-8"), FOLD_FILE, "The rest of the answer")
    return Outgoing(
        content=content[:MAX_CONTENT], embeds=base.embeds, view=base.view, file=attachment
    )


def fold_chunks(chunks: list[Outgoing], slots: int) -> list[Outgoing]:
    """At most `slots` messages: the text that does not fit rides on the last one as a file."""
    if len(chunks) <= slots:
        return chunks
    keep = max(slots, 1) - 1
    last = chunks[keep]
    rest = "\n\n".join(c.content for c in chunks[keep:] if c.content)
    log.info("discord: folded %d messages into %d (follow-up limit)", len(chunks), keep + 1)
    return [*chunks[:keep], carrier(last.content, rest, base=last)]


class BudgetedSink:
    """A stream sink that posts new messages only while follow-ups allow it.

    Later messages are kept here (virtual) and, when the stream finishes, sent as one message
    if a follow-up allows it, else as one carrier with the rest attached as a file.
    """

    def __init__(
        self,
        sink: StreamSink,
        budget: FollowupBudget,
        post: Callable[[Outgoing], Awaitable[MessageRef]],
    ) -> None:
        self._sink = sink
        self._budget = budget
        self._post = post
        self._posted = 0
        self._virtual: dict[str, str] = {}  # ref id -> latest text, in posting order
        self._trailer = ""
        self._flushed = False

    async def post(self, text: str) -> MessageRef:
        """Post while a follow-up for this and one for the overflow (plus the reserve) remain."""
        if self._virtual or (self._posted and self._budget.left <= FOLD_RESERVE + 1):
            ref = MessageRef(platform="discord", channel="", id=f"virtual-{len(self._virtual)}")
            self._virtual[ref.id] = text
            return ref
        self._posted += 1
        return await self._sink.post(text)

    async def update(self, ref: MessageRef, text: str) -> None:
        """Edit a posted message, or keep the newest text of a virtual one."""
        if ref.id in self._virtual:
            self._virtual[ref.id] = text
            return
        await self._sink.update(ref, text)

    def render_trailer(self, trailer: Sequence[Part]) -> str:
        """The usage line (remembered, so a folded answer still shows it)."""
        self._trailer = self._sink.render_trailer(trailer).strip()
        return self._trailer

    async def flush(self) -> None:
        """Send what did not get a message of its own (once)."""
        if self._flushed or not self._virtual:
            self._flushed = True
            return
        # Model text, made inert like every streamed message (it was kept here as it came).
        texts = list(self._virtual.values())
        if len(texts) == 1 and self._budget.left > FOLD_RESERVE:
            await self._post(Outgoing(content=inert(texts[0])[:MAX_CONTENT]))
        else:
            rest = "\n\n".join(texts)
            tail = ""
            if self._trailer and rest.endswith(self._trailer):
                rest, tail = rest[: -len(self._trailer)].rstrip(), self._trailer
            await self._post(carrier("", inert(rest), tail=tail))
        self._flushed = True


class FoldedStream(ThrottledStream):
    """The throttled stream of an interaction with a follow-up limit: folds what doesn't fit."""

    def __init__(self, sink: BudgetedSink, limits: Limits, *, limit: int) -> None:
        super().__init__(sink, limits, limit=limit)
        self._folding = sink

    async def finish(self, trailer: Sequence[Part] = ()) -> None:
        """Show everything, then send the folded rest."""
        await super().finish(trailer)
        await self._folding.flush()
