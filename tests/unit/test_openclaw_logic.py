"""Pure OpenClaw Token rules: the fee, reset periods, error envelopes, tables, confirmations."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bot.backends.alltoken.failures import render_failure
from bot.backends.openclaw_token.confirm import Confirmations
from bot.backends.openclaw_token.render import (
    apply_filter,
    json_block,
    quote_fields,
    render_openclaw_failure,
    sort_keys,
    usd,
)
from bot.backends.openclaw_token.service import (
    AuthResult,
    ProvisionedKey,
    next_reset,
    openclaw_error,
    period_start,
    platform_fee,
    purchase_total,
)
from bot.backends.openclaw_token.spec import KeyFilter, KeySort
from bot.core.errors import BackendError
from bot.store import Owner, SecretBox, Store


@pytest.mark.parametrize(
    ("amount", "fee", "total"),
    [
        ("5", "0.80", "5.80"),  # 0.275 -> the $0.80 minimum
        ("14.54", "0.80", "15.34"),  # 0.7997 -> still the minimum
        ("14.55", "0.80", "15.35"),  # 0.80025 rounds to 0.80
        ("14.64", "0.81", "15.45"),  # 0.8052 -> 0.81
        ("100", "5.50", "105.50"),
        ("25", "1.38", "26.38"),  # 1.375 rounds half up
    ],
)
def test_fee_is_5_5_percent_with_a_0_80_minimum(amount: str, fee: str, total: str) -> None:
    assert platform_fee(Decimal(amount)) == Decimal(fee)
    assert purchase_total(Decimal(amount)) == Decimal(total)


def test_quote_table_shows_fee_and_total() -> None:
    rows = dict(quote_fields(Decimal("14.54")).rows)
    assert rows["credits"] == "$14.54" and rows["total charged"] == "$15.34"
    assert any(v == "$0.80" for v in rows.values())


def test_reset_periods_are_utc_calendar_periods() -> None:
    now = datetime(2026, 5, 13, 15, 30, tzinfo=UTC)  # a Wednesday
    assert period_start("daily", now) == datetime(2026, 5, 13, tzinfo=UTC)
    assert period_start("weekly", now) == datetime(2026, 5, 11, tzinfo=UTC)
    assert period_start("monthly", now) == datetime(2026, 5, 1, tzinfo=UTC)
    assert next_reset("daily", now) == datetime(2026, 5, 14, tzinfo=UTC)
    assert next_reset("weekly", now) == datetime(2026, 5, 18, tzinfo=UTC)
    assert next_reset("monthly", now) == datetime(2026, 6, 1, tzinfo=UTC)
    assert next_reset("monthly", datetime(2026, 12, 31, 23, tzinfo=UTC)) == datetime(
        2027, 1, 1, tzinfo=UTC
    )


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=body,
        headers=headers or {},
        request=httpx.Request("GET", "http://x/keys"),
    )


def test_error_envelope_and_flat_device_errors() -> None:
    err = openclaw_error(
        _response(
            429,
            b'{"error": {"code": "CREDIT_LIMIT_EXCEEDED", "message": "limit"}}',
            {"x-request-id": "req_1"},
        )
    )
    assert (err.backend, err.status, err.code, err.request_id) == (
        "openclaw_token",
        429,
        "CREDIT_LIMIT_EXCEEDED",
        "req_1",
    )
    flat = openclaw_error(
        _response(400, b'{"error": "slow_down", "error_description": "wait", "interval": 10}')
    )
    assert flat.code == "slow_down" and flat.message == "wait" and flat.details["interval"] == 10
    bare = openclaw_error(_response(502, b"<html>bad gateway</html>"))
    assert bare.code == "UPSTREAM_UNREACHABLE" and "bad gateway" in bare.message


@pytest.mark.parametrize(
    ("status", "code", "hint_part"),
    [
        (429, "CREDIT_LIMIT_EXCEEDED", "keys update 0123456789abcdef --limit"),
        (401, "KEY_DISABLED", "--enabled"),
        (401, "KEY_REVOKED", "keys create"),
        (401, "KEY_EXPIRED", "keys create"),
        (402, "INSUFFICIENT_CREDITS", "credits buy"),
        (401, "UNAUTHORIZED", "auth login"),
        (401, "INVALID_CREDENTIALS", "auth login --email"),
        (409, "EMAIL_EXISTS", "auth login --email"),
        (409, "KEY_NAME_EXISTS", "--name"),
        (404, "KEY_NOT_FOUND", "keys list"),
        (502, "UPSTREAM_UNREACHABLE", "model provider"),
        (503, "INTERNAL_ERROR", "server error"),
    ],
)
def test_every_code_gets_a_next_step(status: int, code: str, hint_part: str) -> None:
    error = BackendError("openclaw_token", status, code, "boom", request_id="req_9")
    failure = render_openclaw_failure(error, "0123456789abcdef")
    assert failure.code == code and failure.request_id == "req_9"
    assert hint_part in (failure.hint or "")
    assert "rate-limiting" not in (failure.hint or "")  # a spend limit is not a rate limit


def test_the_family_renders_its_own_failures() -> None:
    from bot.backends.openclaw_token.family import openclaw_token_family

    render = openclaw_token_family().render_failure
    assert render is not None
    failure = render(BackendError("openclaw_token", 401, "KEY_DISABLED", "off"))
    assert "/alltoken-key" not in (failure.hint or "") and "--enabled" in (failure.hint or "")


def test_images_and_videos_say_they_have_no_fallback() -> None:
    error = BackendError("alltoken", 402, "insufficient_balance", "no money")
    assert "no OpenClaw Token fallback" in (render_failure(error, command="image").hint or "")
    assert "no OpenClaw Token fallback" in (render_failure(error, command="video").hint or "")
    assert "fallback" not in (render_failure(error).hint or "")


def test_usd() -> None:
    assert usd(Decimal(100)) == "$100.00"
    assert usd(Decimal("1234.5")) == "$1,234.50"
    assert usd(Decimal("0.000155")) == "$0.000155"
    assert usd(None) == "n/a"


def _key(name: str, usage: str, **kw: object) -> ProvisionedKey:
    return ProvisionedKey(hash=name * 16, name=name, usage=Decimal(usage), **kw)


def test_filters_and_sorting() -> None:
    keys = [
        _key("a", "12", credit_limit=Decimal(50)),
        _key("b", "3", disabled=True),
        _key("c", "10"),
    ]
    over = apply_filter(keys, KeyFilter(kind="usage", op=">", value=Decimal(10)))
    assert [k.name for k in over] == ["a"]
    at_most = apply_filter(keys, KeyFilter(kind="usage", op="<=", value=Decimal(10)))
    assert [k.name for k in at_most] == ["b", "c"]
    assert [k.name for k in apply_filter(keys, KeyFilter(kind="active"))] == ["a", "c"]
    assert [k.name for k in apply_filter(keys, KeyFilter(kind="disabled"))] == ["b"]
    assert [k.name for k in sort_keys(keys, KeySort(field="usage", descending=True))] == [
        "a",
        "c",
        "b",
    ]
    assert [k.name for k in sort_keys(keys, KeySort(field="limit"))] == ["a", "b", "c"]


def test_json_block_never_shows_the_management_key() -> None:
    result = AuthResult(management_key="sk-mgmt-" + "0" * 36, email="a@b.co")
    block = json_block(result).markdown
    assert "sk-mgmt-" not in block and "a@b.co" in block
    key = _key("a", "1", key="sk-prov-" + "f" * 32)
    assert "sk-prov-" not in json_block(key).markdown
    assert "sk-prov-" in json_block(key, keep_key=True).markdown


async def test_confirmations_are_owner_bound_single_use_and_expire(tmp_path: Path) -> None:
    now = [0.0]
    store = await Store.open(tmp_path / "t.db", SecretBox.generate(), allow_new_store=True)
    confirmations = Confirmations(store, ttl_s=60, clock=lambda: now[0])
    alice = Owner(platform="slack", workspace="w", user="alice")
    bob = Owner(platform="slack", workspace="w", user="bob")
    async with store:
        token = await confirmations.offer(alice, "credits.buy", {"amount": "5"})
        assert (await confirmations.take(bob, token))[0] == "not_yours"
        status, pending = await confirmations.take(alice, token)
        assert status == "ok" and pending is not None and pending.payload == {"amount": "5"}
        assert (await confirmations.take(alice, token))[0] == "taken"
        late = await confirmations.offer(alice, "auth.rotate")
        now[0] = 61
        assert (await confirmations.take(alice, late))[0] == "expired"
        cancelled = await confirmations.offer(alice, "auth.rotate")
        assert await confirmations.cancel(alice, cancelled) == "ok"
        assert (await confirmations.take(alice, cancelled))[0] == "cancelled"
