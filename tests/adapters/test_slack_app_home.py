"""The App Home tab against the fake Slack: key status without key material, the key buttons
opening the private forms, the last calls with cost, and the month's spend against a cap."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.slack.app_home import KEY_ACTION
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests import leaks
from tests.fakes.slack import TEAM, SlackHarness, view_submission

# A key of a distinctive shape, so a scan for its tail cannot match a date or a count.
OPENMARLIN_KEY = "claw_wsk_HomeTabNeverShowsThisQzXw"


def owner(user: str = "U1") -> Owner:
    return Owner(platform="slack", workspace=TEAM, user=user)


@pytest.fixture
async def slack(tmp_path: Path, sim: AllTokenSim) -> AsyncIterator[SlackHarness]:
    """U1 has an AllToken key (funded) and an OpenMarlin key."""
    harness = await SlackHarness.start(tmp_path / "data", sim.base_url)
    store = harness.bot.store
    await store.put_credential(owner(), "alltoken", sim.issue_key(10.0))
    leaks.secret(OPENMARLIN_KEY)
    await store.put_credential(owner(), "openmarlin", OPENMARLIN_KEY)
    try:
        yield harness
    finally:
        await harness.aclose()


def home_opened(user: str = "U1") -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "channel": f"D{user}", "tab": "home"}


async def published(slack: SlackHarness, user: str = "U1") -> dict[str, Any]:
    await slack.event(home_opened(user))
    await slack.settle()
    call = slack.fake.calls_to("views.publish")[-1]
    assert call.args["user_id"] == user
    view = call.args["view"]
    assert view["type"] == "home"
    return dict(view)


def key_click(family: str, user: str = "U1") -> dict[str, Any]:
    """A click on a key button of the Home tab (a view: no channel, no message)."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "fake"},
        "user": {"id": user, "team_id": TEAM},
        "api_app_id": "A1",
        "container": {"type": "view", "view_id": "V1"},
        "view": {"id": "V1", "type": "home"},
        "trigger_id": "trig-home",
        "actions": [
            {
                "type": "button",
                "action_id": f"{KEY_ACTION}:{family}",
                "block_id": "keys",
                "value": family,
                "action_ts": str(time.time()),
            }
        ],
    }


async def test_home_shows_key_status_but_no_key_material(slack: SlackHarness) -> None:
    store = slack.bot.store
    view = await published(slack)
    payload = json.dumps(slack.fake.calls_to("views.publish")[-1].args)
    assert "AllToken: set" in payload and "OpenMarlin: set" in payload
    assert "OpenClaw Token: not set" in payload
    for service in ("alltoken", "openmarlin"):
        key = await store.get_credential(owner(), service)
        info = await store.credential_info(owner(), service)
        assert key and info is not None
        assert key not in payload and info.fingerprint not in payload
    assert OPENMARLIN_KEY[-4:] not in payload  # not even the fingerprint's tail
    # One key button per backend that has a key command.
    [actions] = [b for b in view["blocks"] if b["type"] == "actions"]
    with_keys = {f.name for f in slack.bot.families if f.key_command}
    assert {e["value"] for e in actions["elements"]} == with_keys >= {"alltoken", "openmarlin"}
    # Someone without keys sees "not set" everywhere.
    other = json.dumps(await published(slack, "U2"))
    assert ": set" not in other and "AllToken: not set" in other
    # A workspace key (its fingerprint neither) is never shown either, only that it is used.
    shared = "sk-at-WorkspaceKeyTailIsSecretQzYv"
    leaks.secret(shared)
    info = await store.put_workspace_key("slack", TEAM, "alltoken", shared, by_user="U9")
    other = json.dumps(await published(slack, "U2"))
    assert "AllToken: not set (the workspace's key is used)" in other
    assert shared not in other and info.fingerprint not in other and shared[-4:] not in other


async def test_home_lists_the_last_calls_with_their_cost(slack: SlackHarness) -> None:
    before = json.dumps(await published(slack))
    assert "No calls yet." in before
    await slack.command("/alltoken-chat", "hello there")
    await slack.settle()
    [call] = await slack.bot.store.list_usage(owner())
    assert call.cost_usd is not None
    after = json.dumps(await published(slack))
    assert "chat" in after and "gpt-5.4-mini" in after
    assert f"${call.cost_usd.quantize(Decimal('0.000001')):f}" in after


async def test_a_key_button_opens_the_private_key_form_and_stores_the_key(
    slack: SlackHarness, sim: AllTokenSim
) -> None:
    fake = slack.fake
    delivery = await slack.send("interactive", key_click("alltoken", user="U5"))
    assert delivery.status == 200
    await slack.settle()
    [opened] = fake.calls_to("views.open")
    assert opened.args["trigger_id"] == "trig-home"
    [form] = fake.views
    assert form["callback_id"] == "tokenbot.form"
    assert json.loads(form["private_metadata"])["channel"] == "DU5"  # answered in the DM
    key = sim.issue_key(1.0)
    await slack.send("interactive", view_submission(form, {"key": key}, user="U5"))
    await slack.settle()
    assert await slack.bot.store.get_credential(owner("U5"), "alltoken") == key
    assert key not in fake.all_text()
    # The page is republished after the form, without the person reopening the tab.
    after = fake.calls_to("views.publish")
    assert after and after[-1].args["user_id"] == "U5"
    assert "AllToken: set" in json.dumps(after[-1].args["view"])
    assert "AllToken: set" in json.dumps(await published(slack, "U5"))


async def test_a_forged_button_value_runs_nothing(slack: SlackHarness) -> None:
    await slack.send("interactive", key_click("no-such-family"))
    await slack.settle()
    assert not slack.fake.calls_to("views.open")
    assert not slack.fake.calls_to("chat.postEphemeral")


async def test_the_month_section_shows_spend_against_the_cap_only_with_a_cap(
    slack: SlackHarness,
) -> None:
    assert '"This month"' not in json.dumps(await published(slack))
    await slack.bot.store.set_policy("slack", TEAM, "budget", {"user_monthly_usd": "5"}, "U9")
    view = json.dumps(await published(slack))
    assert '"This month"' in view and "of your $5.000000 monthly cap" in view
