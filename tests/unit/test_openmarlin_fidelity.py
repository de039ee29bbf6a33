"""Seed-style OpenMarlin phrasings reach the same commands; nested server values read as words."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from bot.backends.openmarlin.grammar import parse
from bot.backends.openmarlin.render import (
    TASK_METADATA,
    activity_text,
    readable,
    referral_parts,
    task_done,
)
from bot.backends.openmarlin.service import Amount, TaskStatus, UsageEvent
from bot.backends.openmarlin.spec import (
    OMActivity,
    OMBalance,
    OMHelp,
    OMKey,
    OMModels,
    OMReferral,
    OMRegister,
    OMStatus,
    OMTaskStatus,
    OMTopUp,
)
from bot.core.grammar import UsageError
from bot.core.messages import Fields

# --- phrasings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seed_style", "reference"),
    [
        ("top up OpenMarlin 3", "use openmarlin to top up 3"),
        ("OpenMarlin top up 3", "use openmarlin to top up 3"),
        ("please top up OpenMarlin 3", "use openmarlin to top up 3"),
        ("can you top up my OpenMarlin balance by 3?", "use openmarlin to top up 3"),
        ("top up the OpenMarlin workspace with 2.5 credits", "use openmarlin top up 2.5"),
        ("OpenMarlin, top up 3", "use openmarlin to top up 3"),
        ("sign up for OpenMarlin", "use openmarlin register"),
        ("log in to OpenMarlin", "use openmarlin register"),
        ("show my OpenMarlin status", "use openmarlin status"),
        ("check OpenMarlin status", "use openmarlin status"),
        ("list OpenMarlin models", "use openmarlin models"),
        ("OpenMarlin models gpt", "/openmarlin models gpt"),
        ("show OpenMarlin activity", "use openmarlin activity"),
        ("what is the OpenMarlin balance", "use openmarlin balance"),
        ("hey, OpenMarlin balance please", "use openmarlin balance"),
        ("<@U123> OpenMarlin balance", "use openmarlin balance"),
        ("get my OpenMarlin referral link", "use openmarlin referral link"),
        ("OpenMarlin task status task_ab12", "use openmarlin task status task_ab12"),
        ("OpenMarlin key", "/openmarlin key"),
        ("OpenMarlin help", "/openmarlin help"),
    ],
)
def test_seed_style_phrasings_reach_the_same_command(seed_style: str, reference: str) -> None:
    expected = parse(reference)
    assert expected is not None
    assert parse(seed_style) == expected


def test_the_reference_commands_are_what_they_say() -> None:
    assert parse("top up OpenMarlin 3") == OMTopUp(amount=Decimal(3))
    assert isinstance(parse("sign up for OpenMarlin"), OMRegister)
    assert isinstance(parse("show my OpenMarlin status"), OMStatus)
    assert isinstance(parse("list OpenMarlin models"), OMModels)
    assert isinstance(parse("show OpenMarlin activity"), OMActivity)
    assert isinstance(parse("hey, OpenMarlin balance please"), OMBalance)
    assert isinstance(parse("get my OpenMarlin referral link"), OMReferral)
    assert isinstance(parse("OpenMarlin task status task_ab12"), OMTaskStatus)
    assert isinstance(parse("OpenMarlin key"), OMKey)
    assert isinstance(parse("OpenMarlin help"), OMHelp)


@pytest.mark.parametrize(
    "text",
    [
        "openmarlin",
        "OpenMarlin, say hello",  # a paid run needs "use openmarlin"
        "OpenMarlin status report of Q3",
        "I love openmarlin models",
        "we topped up openmarlin yesterday",
        "what is openmarlin? top up 3",
        "I love openmarlin's top up flow",
    ],
)
def test_a_bare_mention_never_starts_paid_work_or_guesses(text: str) -> None:
    assert parse(text) is None


def test_a_seed_style_top_up_with_a_bad_amount_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as info:
        parse("top up OpenMarlin lots")
    assert info.value.command == "openmarlin.topup" and "lots" in info.value.problem


# --- nested values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ({"subtotal": {"amount": 0.4, "unit": "usd"}}, "subtotal 0.4 usd"),
        (
            {"subtotal": {"amount": 0.4, "unit": "usd"}, "tax": {"amount": 0, "unit": "usd"}},
            "subtotal 0.4 usd, tax 0 usd",
        ),
        ({"amount": 1, "unit": "credits"}, "1 credit"),
        ({"line_items": [{"amount": 2, "unit": "credits"}, "fee"]}, "line items 2 credits, fee"),
        ({"amount": "lots", "unit": "usd"}, "amount lots, unit usd"),
        ({"a": {"b": {"c": {"d": {"e": 1}}}}}, "a b c d …"),
        ({}, "—"),
        (None, "—"),
        (True, "yes"),
        (7, "7"),
    ],
)
def test_readable_never_shows_a_python_repr(value: Any, shown: str) -> None:
    assert readable(value) == shown


def test_a_dict_without_amount_is_not_an_amount_of_zero() -> None:
    assert Amount.lenient({"subtotal": {"amount": 0.4, "unit": "usd"}}) is None
    assert Amount.lenient({"amount": 0.4, "unit": "usd"}) == Amount(
        amount=Decimal("0.4"), unit="usd"
    )


def test_task_details_read_nested_settlements_and_skip_tokenbot_s_echo() -> None:
    status = TaskStatus(
        task_id="task_1",
        status="succeeded",
        provider_id="render-1",
        output={
            "video_url": "https://x/v.mp4",
            "settlement": {"subtotal": {"amount": 0.4, "unit": "usd"}},
        },
        metadata={**TASK_METADATA, "queue": {"name": "fast", "position": 0}},
    )
    [details] = [p for p in task_done(status, "a plane") if isinstance(p, Fields)]
    rows = dict(details.rows)
    assert rows["settlement"] == "subtotal 0.4 usd"
    assert rows["queue"] == "name fast, position 0"
    assert "client" not in rows
    assert not any("{" in v or "'" in v for v in rows.values())


def test_activity_reads_units_and_any_settlement_shape() -> None:
    events = [
        UsageEvent(
            capability="video",
            status="settled",
            provider_id="render-1",
            request_id="task_1",
            measured_units=5,
            settlement={"subtotal": {"amount": 0.4, "unit": "usd"}},
        ),
        UsageEvent(
            capability="agent_run",
            measured_units=12,
            settlement={"amount": 1, "unit": "credits"},
        ),
    ]
    text = activity_text(events, []).markdown
    assert "subtotal 0.4 usd" in text and "1 credit" in text
    assert " 5 " in text and " 12 " in text and "{" not in text


def test_referral_attribution_reads_nested_values() -> None:
    [fields, *_] = referral_parts(
        {"referral_code": "ABC", "attribution": {"credits_earned": {"amount": 5, "unit": "usd"}}}
    )
    assert isinstance(fields, Fields)
    assert ("credits earned", "5 usd") in fields.rows
