"""The App Home tab: `app_home_opened` → `views.publish` of the person's own page.

It shows, for that person only: whether each backend's key is set (set / not set, never the
key nor its fingerprint), a button per backend that opens the existing private key form (the
click runs the family's key command, e.g. `/alltoken-key`, whose handler opens the modal with
the click's trigger_id), their last calls with cost, and — where a workspace has set a monthly
cap ("Teams") — this month's spend against it. Everything shown from data goes out as
plain_text made inert: a model id cannot become a mention or a link.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp

from adapters.slack.inert import inert_plain
from bot.core.messages import Inbound
from bot.store import Owner, UsageRecord

if TYPE_CHECKING:
    from adapters.slack.assistant import ListenerHost
    from bot.core.app import TokenBot
    from bot.core.family import CommandFamily

KEY_ACTION = "tokenbot.home.key"
KEY_ACTION_PATTERN = re.compile(r"^tokenbot\.home\.key:")
RECENT_CALLS = 5
_PLAIN = 3000
_BUTTON = 75


def _plain(text: str, limit: int = _PLAIN) -> dict[str, Any]:
    return {"type": "plain_text", "text": inert_plain(text)[:limit] or " "}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _plain(text)}


def _header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": _plain(text, 150)}


def key_command(family: CommandFamily) -> tuple[str, str] | None:
    """The family's key command as (slash command, text): "`/openmarlin key`" → ("/openmarlin", "key")."""
    words = family.key_command.strip("` ").split(maxsplit=1)
    if not words or not words[0].startswith("/"):
        return None
    return words[0], words[1] if len(words) > 1 else ""


def _usd(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.000001')):f}"


def _call_line(call: UsageRecord) -> str:
    pieces = [f"{call.created_at:%Y-%m-%d %H:%M} UTC", call.service, call.command]
    if call.model:
        pieces.append(call.model)
    pieces.append(f"{call.prompt_tokens + call.completion_tokens:,} tokens")
    pieces.append(_usd(call.cost_usd) if call.cost_usd is not None else "cost unknown")
    return " · ".join(pieces)


async def _key_blocks(bot: TokenBot, owner: Owner) -> list[dict[str, Any]]:
    stored = {info.service: info for info in await bot.store.list_credentials(owner)}
    lines = []
    for family in bot.families:
        for service in family.key_services:
            info = stored.get(service.name)
            if info is None:
                shared = await bot.store.workspace_key_info(
                    owner.platform, owner.workspace, service.name
                )
                # "Teams": members without a key of their own use the workspace's.
                state = "not set (the workspace's key is used)" if shared else "not set"
            elif not info.readable:
                state = "set, but unreadable: set it again"
            else:
                state = "set"
            lines.append(f"{service.display}: {state}")
    blocks: list[dict[str, Any]] = [_header("Your keys")]
    blocks.append(_section("\n".join(lines) if lines else "No backend needs a key."))
    buttons = [
        {
            "type": "button",
            "action_id": f"{KEY_ACTION}:{family.name}",
            "text": _plain(f"Set {family.display_name} key", _BUTTON),
            "value": family.name,
        }
        for family in bot.families
        if key_command(family) is not None
    ]
    if buttons:
        blocks.append({"type": "actions", "block_id": "keys", "elements": buttons[:25]})
        blocks.append(
            {
                "type": "context",
                "elements": [
                    _plain("Each button opens a private form: only you see what you type.")
                ],
            }
        )
    return blocks


async def _calls_blocks(bot: TokenBot, owner: Owner) -> list[dict[str, Any]]:
    calls = await bot.store.list_usage(owner, RECENT_CALLS)
    text = "\n".join(_call_line(call) for call in calls) if calls else "No calls yet."
    return [_header("Your last calls"), _section(text)]


def _monthly_cap(policy: dict[str, Any]) -> Decimal | None:
    budget = policy.get("budget")
    raw = budget.get("user_monthly_usd") if isinstance(budget, dict) else None
    if raw is None or isinstance(raw, bool):
        return None
    try:
        cap = Decimal(str(raw))
    except ArithmeticError:
        return None
    return cap if cap.is_finite() and cap > 0 else None


async def _spend_blocks(bot: TokenBot, owner: Owner) -> list[dict[str, Any]]:
    """This month's spend against the member's monthly cap; nothing when no cap is set."""
    policy = await bot.store.get_policy(owner.platform, owner.workspace)
    cap = _monthly_cap(policy)
    if cap is None:
        return []
    now = datetime.now(UTC)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    rows = await bot.store.ledger_rows(
        owner.platform, owner.workspace, user=owner.user, since=month
    )
    budget = policy.get("budget")
    opt_ins = budget.get("own_key_opt_in") if isinstance(budget, dict) else None
    opted_in = isinstance(opt_ins, list) and owner.user in opt_ins
    # What counts against a cap: workspace-key calls, and own-key calls of those who opted in.
    counted = sum((r.cost_usd for r in rows if r.key_source == "workspace" or opted_in), Decimal(0))
    text = f"{_usd(counted)} of your {_usd(cap)} monthly cap ({now:%B %Y}, UTC)."
    return [_header("This month"), _section(text)]


async def home_view(bot: TokenBot, owner: Owner) -> dict[str, Any]:
    """The person's Home tab."""
    blocks: list[dict[str, Any]] = [
        _section(
            "tokenbot calls AllToken, OpenMarlin and OpenClaw Token with your own keys. "
            "Only you see this page."
        )
    ]
    blocks += await _key_blocks(bot, owner)
    blocks += await _calls_blocks(bot, owner)
    blocks += await _spend_blocks(bot, owner)
    return {"type": "home", "blocks": blocks}


class AppHome:
    """What the App Home listeners do after their ack."""

    def __init__(self, host: ListenerHost) -> None:
        self.host = host
        self.platform = host.platform

    async def publish(self, user: str, team: str) -> None:
        """views.publish the person's page."""
        owner = Owner(platform="slack", workspace=team, user=user)
        view = await home_view(self.platform.bot, owner)
        await self.platform.client.views_publish(user_id=user, view=view)

    async def open_key_form(self, body: dict[str, Any], family_name: str) -> None:
        """Run the family's key command as the person, in their DM, with the click's trigger."""
        bot = self.platform.bot
        family = next((f for f in bot.families if f.name == family_name), None)
        command = key_command(family) if family is not None else None
        user = str((body.get("user") or {}).get("id") or "")
        if command is None or not user:
            return  # not a button of ours
        team = str((body.get("team") or {}).get("id") or self.platform.identity.team_id)
        channel = await self.platform.dm_channel(user)
        inbound = Inbound(
            platform="slack",
            workspace=team,
            channel=channel,
            user=user,
            text=command[1],
            command=command[0],
            is_direct=True,
            is_public=False,
        )
        extras = {"team": team, "command": command[0]}
        if body.get("trigger_id"):
            extras["trigger_id"] = str(body["trigger_id"])
        await bot.handle(inbound, self.platform.conversation_for(inbound.destination(**extras)))


def attach_app_home(app: AsyncApp, host: ListenerHost) -> None:
    """Register `app_home_opened` and the key buttons (before any catch-all action)."""
    home = AppHome(host)
    platform = host.platform

    @app.event("app_home_opened")
    async def on_home_opened(body: dict[str, Any], event: dict[str, Any]) -> None:
        try:
            if event.get("tab") not in (None, "home"):
                return  # the Messages tab (the assistant thread) needs no page
            team = str(body.get("team_id") or platform.identity.team_id)
            host.spawn(home.publish(str(event.get("user") or ""), team), "slack app home", body)
        except Exception as exc:
            host.crashed("slack app home", body, exc)

    @app.action(KEY_ACTION_PATTERN)
    async def on_key_button(ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        try:
            await ack()
            work = home.open_key_form(body, str(action.get("value") or ""))
            host.spawn(work, "slack app home key", body)
        except Exception as exc:
            host.crashed("slack app home key", body, exc)
