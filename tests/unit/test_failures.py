"""render_failure and suggest_alternatives: every known code gets a specific next step."""

from __future__ import annotations

import httpx
import pytest

from bot.backends.alltoken.failures import render_failure, suggest_alternatives
from bot.core.errors import BackendError, alltoken_error, transport_error


def err(status: int, code: str, **kw: object) -> BackendError:
    return BackendError("alltoken", status, code, "msg", request_id="req_1", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "code", "needle"),
    [
        (401, "invalid_api_key", "/alltoken-key"),
        (402, "insufficient_balance", "top up"),
        (429, "rate_limited", "rate-limiting"),
        (503, "all_providers_failed", "/alltoken-models"),
        (410, "image_already_retrieved", "only once"),
        (410, "image_expired", "expired"),
        (404, "model_not_found", "/alltoken-models"),
        (400, "upstream_content_violation", "rephrase"),
        (0, "timeout", "did not answer"),
        (0, "connection_error", "could not reach"),
        (0, "bad_response", "could not read"),
        (502, "bad_gateway", "server error"),
    ],
)
def test_each_code_has_a_next_step(status: int, code: str, needle: str) -> None:
    failure = render_failure(err(status, code))
    assert failure.code == code and failure.request_id == "req_1"
    assert needle.lower() in (failure.hint or "").lower()


def test_rate_limit_names_the_wait() -> None:
    assert "30 s" in (render_failure(err(429, "rate_limited", retry_after=30.0)).hint or "")


def test_invalid_request_names_the_param() -> None:
    e = err(400, "invalid_request", details={"param": "size"})
    assert "`size`" in (render_failure(e).hint or "")


def test_alternatives_same_family_first_then_one_per_other_family() -> None:
    available = [
        "claude-opus-4-7",
        "claude-sonnet-4-6",
        "claude-haiku-4-5",
        "gpt-5.4",
        "gpt-5.5",
        "gemini-3-flash-preview",
    ]
    alts = suggest_alternatives("claude-opus-4-7", available)
    assert alts[0].startswith("claude-") and "claude-opus-4-7" not in alts
    assert alts[-1] == "gpt-5.4" and len(alts) == 3


def test_alternatives_without_same_family() -> None:
    assert suggest_alternatives("kimi-k2.6", ["gpt-5.4", "gpt-5.5", "glm-5.1"]) == [
        "gpt-5.4",
        "glm-5.1",
    ]


def _response(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, content=body, headers=headers, request=httpx.Request("GET", "http://x/v1/models")
    )


def test_envelope_request_id_inside_or_top_level() -> None:
    inner = alltoken_error(
        _response(402, b'{"error":{"code":"insufficient_balance","message":"m","request_id":"r1"}}')
    )
    top = alltoken_error(
        _response(
            429,
            b'{"error":{"code":"rate_limited","message":"m"},"request_id":"r2"}',
            {"Retry-After": "3"},
        )
    )
    assert (inner.code, inner.request_id) == ("insufficient_balance", "r1")
    assert (top.code, top.request_id, top.retry_after) == ("rate_limited", "r2", 3.0)


def test_non_json_error_body_still_maps() -> None:
    e = alltoken_error(_response(502, b"<html>bad gateway</html>"))
    assert e.code == "bad_gateway" and "bad gateway" in e.message


def test_duplicate_request_carries_task_id() -> None:
    e = alltoken_error(
        _response(409, b'{"error":{"code":"duplicate_request","message":"m","task_id":"igen_1"}}')
    )
    assert e.task_id == "igen_1"


def test_transport_errors() -> None:
    assert transport_error("alltoken", httpx.ReadTimeout("x")).code == "timeout"
    assert transport_error("alltoken", httpx.ConnectError("x")).code == "connection_error"


def test_prices_show_at_least_cents() -> None:
    from decimal import Decimal

    from bot.backends.alltoken.render import price_text

    assert price_text(Decimal("0.2")) == "$0.20"
    assert price_text(Decimal("0.55")) == "$0.55"
    assert price_text(Decimal("2.5000")) == "$2.50"
    assert price_text(Decimal("0.0375")) == "$0.0375"


def test_model_lists_say_how_to_see_the_other_types() -> None:
    from bot.backends.alltoken.render import models_reply

    text = models_reply("chat", [], "").markdown
    assert "`--type=image`" in text and "`--type=video`" in text and "--type=chat" not in text
