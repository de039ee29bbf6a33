"""Pure OpenMarlin pieces: failure texts, the 402 offer, balances, the simulator's routing rules,
and the bare-origin rule for OPENMARLIN_SERVER_URL (settings, CLI start-up, service)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from bot.backends.openmarlin.render import (
    ROUTING_MEANING,
    TOPUP_ACTION,
    RoutingSent,
    amount_text,
    failure,
    insufficient_parts,
    snapshot_fields,
)
from bot.backends.openmarlin.service import (
    ROUTING_CODES,
    Amount,
    InsufficientBalance,
    OpenMarlinService,
    openmarlin_error,
)
from bot.cli import _settings
from bot.core.errors import BackendError
from bot.core.messages import Actions, Failure, Fields
from bot.core.settings import Settings
from bot.sim.openmarlin.world import ApiError, check_labels, default_providers, route

ROOT = Path(__file__).resolve().parents[2]


def _error(code: str, status: int = 400, **details: object) -> BackendError:
    return BackendError("openmarlin", status, code, code, request_id="req_1", details=details)


@pytest.mark.parametrize("code", sorted(ROUTING_CODES))
def test_every_routing_error_is_explained_and_restates_what_was_sent(code: str) -> None:
    sent = RoutingSent(model="a/b", provider_id="node-a", labels={"region": "eu"})
    part = failure(_error(code), sent=sent)
    assert part.code == code and part.request_id == "req_1"
    assert ROUTING_MEANING[code] in part.message
    assert "provider `node-a`, labels `region=eu`, model `a/b`" in part.message
    assert "automatically" in (part.hint or "")


def test_routing_codes_on_a_task_never_suggest_provider_overrides() -> None:
    part = failure(_error("task_executor_not_found", 404), task=True)
    assert "video request" in (part.hint or "") and "on provider" not in (part.hint or "")


def test_automatic_routing_is_described_as_such() -> None:
    assert RoutingSent().describe() == "no provider, no labels"


@pytest.mark.parametrize(
    ("code", "status", "needle"),
    [
        ("missing_api_key", 401, "/openmarlin register"),
        ("invalid_api_key", 401, "/openmarlin key"),
        ("api_key_inactive", 403, "/openmarlin register"),
        ("workspace_missing", 403, "/openmarlin register"),
        ("account_missing", 403, "/openmarlin register"),
        ("skill_not_available", 404, "without naming an agent"),
        ("invalid_request", 400, "/openmarlin help"),
        ("rate_limited", 429, "Try again"),
        ("server_error", 503, "Try again in a minute"),
    ],
)
def test_other_codes_get_a_next_step(code: str, status: int, needle: str) -> None:
    part = failure(_error(code, status))
    assert part.code == code and needle in (part.hint or "")


def test_402_shows_current_required_shortfall_and_a_top_up_button() -> None:
    error = openmarlin_error(
        httpx.Response(
            402,
            json={
                "error_code": "insufficient_balance",
                "message": "Workspace balance is insufficient for this request.",
                "workspace_id": "ws_1",
                "current_balance": {"amount": 0.25, "unit": "credits"},
                "required_balance": {"amount": 2, "unit": "credits"},
            },
            headers={"x-request-id": "req_402"},
        )
    )
    info = InsufficientBalance.from_error(error)
    assert info is not None and info.shortfall == Decimal("1.75") and info.workspace_id == "ws_1"
    fail, fields, actions = insufficient_parts(info, error.request_id)
    assert isinstance(fail, Failure) and fail.request_id == "req_402"
    assert isinstance(fields, Fields) and dict(fields.rows)["shortfall"] == "1.75 credits"
    assert isinstance(actions, Actions)
    [button] = actions.buttons
    assert button.action_id == TOPUP_ACTION and button.value == "1.75"
    assert button.label == "Top up 1.75 credits"


def test_error_envelopes() -> None:
    plain = openmarlin_error(httpx.Response(409, json={"error": "provider_label_mismatch"}))
    assert plain.code == "provider_label_mismatch" and plain.status == 409
    html = openmarlin_error(httpx.Response(502, text="<html>bad gateway</html>"))
    assert html.code == "server_error"
    bare = openmarlin_error(httpx.Response(404))
    assert bare.code == "not_found"


def test_snapshot_is_labelled_last_known() -> None:
    fields = snapshot_fields(
        {
            "balance_amount": "7",
            "balance_unit": "credits",
            "balance_at": "2026-01-02T03:04:05+00:00",
        }
    )
    assert fields is not None and fields.title.endswith("last known at 2026-01-02 03:04 UTC")
    assert snapshot_fields({}) is None


def test_amounts_read_leniently_and_print_plainly() -> None:
    assert Amount.lenient(3) == Amount(amount=Decimal(3))
    assert Amount.lenient({"amount": "1.50", "unit": "usd"}) == Amount(
        amount=Decimal("1.50"), unit="usd"
    )
    assert Amount.lenient("nope") is None and Amount.lenient(True) is None
    assert amount_text(Decimal("10.00")) == "10 credits"
    assert amount_text(Amount(amount=Decimal("0.50"))) == "0.5 credits"


# --- the simulator's routing rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"provider_id": "nope"}, "execution_provider_not_found"),
        ({"provider_id": "node-c"}, "provider_unavailable"),
        ({"provider_id": "render-1"}, "execution_kind_not_available"),
        ({"provider_id": "node-a", "labels": {"region": "us"}}, "provider_label_mismatch"),
        (
            {"provider_id": "node-b", "model": "anthropic/claude-sonnet-4-6"},
            "provider_route_not_found",
        ),
        ({"model": "acme/none"}, "provider_route_not_found"),
        ({"labels": {"tier": "standard"}}, "execution_provider_ambiguous"),
        ({"labels": {"region": "mars"}}, "execution_provider_not_found"),
    ],
)
def test_sim_routing_errors(kwargs: dict[str, object], code: str) -> None:
    args: dict[str, object] = {"model": None, "provider_id": None, "labels": {}, **kwargs}
    with pytest.raises(ApiError) as info:
        route(default_providers(), **args)  # type: ignore[arg-type]
    assert info.value.code == code


def test_sim_routing_choices() -> None:
    providers = default_providers()
    assert route(providers, model=None, provider_id=None, labels={})[0].provider_id == "node-a"
    chosen, model = route(providers, model=None, provider_id=None, labels={"region": "us"})
    assert (chosen.provider_id, model) == ("node-b", "openai-codex/gpt-5.4")
    chosen, _ = route(providers, model="qwen/qwen3-coder-plus", provider_id=None, labels={})
    assert chosen.provider_id == "node-b"  # node-c serves it too but is offline


@pytest.mark.parametrize("labels", [{"region": ""}, {"Region": "eu"}, {"a": "b c"}, ["x"]])
def test_sim_rejects_malformed_labels(labels: object) -> None:
    with pytest.raises(ApiError) as info:
        check_labels(labels)
    assert info.value.code == "invalid_routing_labels"


# --- OPENMARLIN_SERVER_URL is a bare origin --------------------------------------------------------


def test_settings_refuse_a_v1_url_with_a_clear_message() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(openmarlin_server_url="https://api.openmarlin.ai/v1/")
    assert "bare origin" in str(info.value) and "without /v1" in str(info.value)
    assert Settings(openmarlin_server_url="https://x.example/").openmarlin_server_url == (
        "https://x.example"
    )


def test_cli_start_up_explains_a_v1_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENMARLIN_SERVER_URL", "https://api.openmarlin.ai/v1")
    with pytest.raises(SystemExit) as info:
        _settings()
    assert str(info.value).startswith("tokenbot: bad configuration: OPENMARLIN_SERVER_URL")
    assert "without /v1" in str(info.value)


def test_the_process_refuses_to_start_with_a_v1_url(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENBOT_", "OPENMARLIN_"))}
    env.update(
        OPENMARLIN_SERVER_URL="https://api.openmarlin.ai/v1", TOKENBOT_DATA_DIR=str(tmp_path)
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "console"],
        input="",
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "OPENMARLIN_SERVER_URL must be a bare origin" in proc.stderr
    assert "Traceback" not in proc.stderr


async def test_the_service_refuses_a_v1_url() -> None:
    async with httpx.AsyncClient() as client:
        with pytest.raises(ValueError, match="bare origin"):
            OpenMarlinService(client, "https://api.openmarlin.ai/v1")


def test_one_credit_is_singular() -> None:
    assert amount_text(Decimal("1.00")) == "1 credit"
    assert amount_text(Amount(amount=Decimal("1"))) == "1 credit"
    assert amount_text(Decimal("2")) == "2 credits"
