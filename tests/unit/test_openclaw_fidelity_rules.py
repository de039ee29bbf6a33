"""OpenClaw Token rules that need no server: base shapes, the client id setting, registration
checks, upstream errors, --json as received, and how Confirm prompts expire.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from bot.backends.openclaw_token.auth import registration_problem
from bot.backends.openclaw_token.confirm import Confirmations
from bot.backends.openclaw_token.service import ApiBases, KeyList
from bot.backends.openclaw_token.wire import UPSTREAM_BALANCE, Credits, proxy_error
from bot.core.settings import Settings, load_settings
from bot.store import Owner, SecretBox, Store

ROOT = Path(__file__).resolve().parents[2]


# --- base shapes -----------------------------------------------------------------------------


def test_a_root_base_is_a_self_hosted_server() -> None:
    bases = ApiBases.derive("http://localhost:3000/")
    assert (bases.management, bases.proxy_origin, bases.shape) == (
        "http://localhost:3000",
        "http://localhost:3000",
        "self-hosted",
    )
    assert "proxy http://localhost:3000/v1/chat/completions" in bases.describe()


def test_a_v1_base_is_detected_hosted_first() -> None:
    bases = ApiBases.derive("https://proxy.openclaw-token.dev/v1")
    assert bases.management is None and bases.shape == "to be detected"
    assert bases.candidates == (
        "https://proxy.openclaw-token.dev/v1",
        "https://proxy.openclaw-token.dev",
    )
    assert "the first call finds out" in bases.describe()


# --- the GitHub client id setting ------------------------------------------------------------


def test_the_client_id_is_a_documented_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    name = "TOKENBOT_OPENCLAW_GITHUB_CLIENT_ID"
    assert f"`{name}`" in (ROOT / "README.md").read_text()
    assert f"{name}=" in (ROOT / "config" / "tokenbot.example.env").read_text()
    monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TOKENBOT_CONFIG", str(ROOT / "config" / "tokenbot.example.env"))
    assert load_settings().openclaw_github_client_id == "openclaw-cli"
    monkeypatch.setenv(name, "Iv1.abc")
    assert load_settings().openclaw_github_client_id == "Iv1.abc"
    monkeypatch.delenv(name)
    monkeypatch.setenv("OPENCLAW_GITHUB_CLIENT_ID", "Iv1.stray")  # undocumented: ignored
    assert Settings().openclaw_github_client_id == "openclaw-cli"


# --- registration ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "password", "confirm", "problem"),
    [
        ("a@example.com", "long enough", "long enough", None),
        ("a.b+c@mail.example.org", "12345678", "12345678", None),
        ("not-an-email", "long enough", "long enough", "not an email address"),
        ("a@b", "long enough", "long enough", "not an email address"),
        ("a b@example.com", "long enough", "long enough", "not an email address"),
        ("a@example.com", "abc", "abc", "at least 8"),
        ("a@example.com", "x" * 129, "x" * 129, "at most 128"),
        ("a@example.com", "long enough", "long enougH", "differ"),
        ("", "long enough", "long enough", "both needed"),
    ],
)
def test_registration_problems(
    email: str, password: str, confirm: str, problem: str | None
) -> None:
    found = registration_problem(email, password, confirm)
    assert (found is None) if problem is None else (found is not None and problem in found)


# --- upstream errors through the proxy --------------------------------------------------------


def _response(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode())


def test_an_upstream_balance_error_names_the_operator() -> None:
    body = {"error": {"code": "insufficient_balance", "message": "top up", "type": "x"}}
    error = proxy_error(_response(402, body))
    assert error.code == UPSTREAM_BALANCE and "server operator" in error.message
    assert error.details["upstream"] is True
    quota = {"error": {"code": None, "type": "insufficient_quota", "message": "quota"}}
    assert proxy_error(_response(429, quota)).code == UPSTREAM_BALANCE


def test_the_servers_own_codes_and_bare_statuses_stay() -> None:
    own = {"error": {"code": "INSUFFICIENT_CREDITS", "message": "Insufficient credits"}}
    assert proxy_error(_response(402, own)).code == "INSUFFICIENT_CREDITS"
    assert proxy_error(httpx.Response(404, content=b"404 Not Found")).code == "not_found"
    other = proxy_error(_response(400, {"error": {"code": "context_length", "message": "m"}}))
    assert other.code == "upstream_context_length" and "upstream" in other.message


# --- --json as received ----------------------------------------------------------------------


def test_an_answer_dumps_as_it_was_received() -> None:
    raw = {"total_credits": 100, "total_usage": 0.000035, "remaining": 99.999965}
    credits = Credits.model_validate(raw)
    credits.keep_received(raw)
    assert credits.model_dump(mode="json") == raw  # numbers, not "100"
    assert credits.model_dump()["total_usage"] == credits.total_usage  # python mode unchanged
    changed = credits.model_copy(update={"remaining": Decimal(1)})
    assert changed.model_dump(mode="json")["remaining"] == "1"  # no longer what was sent


def test_nested_answers_keep_their_own_json() -> None:
    raw = {"items": [{"hash": "a" * 16, "name": "k", "usage": 1.5, "disabled": False}]}
    listed = KeyList.model_validate(raw)
    listed.keep_received(raw)
    assert listed.items[0].model_dump(mode="json") == raw["items"][0]  # no revoked/key added


# --- Confirm prompts expire and are reported once ---------------------------------------------


async def test_an_unclicked_prompt_is_swept_once(tmp_path: Path) -> None:
    now = [0.0]
    store = await Store.open(tmp_path / "t.db", SecretBox.generate(), allow_new_store=True)
    confirmations = Confirmations(store, ttl_s=60, clock=lambda: now[0])
    alice = Owner(platform="console", workspace="w", user="alice")
    async with store:
        token = await confirmations.offer(alice, "auth.rotate")
        assert confirmations.offers_to(alice) == 1 and await confirmations.sweep() == []
        now[0] = 61
        [expired] = await confirmations.sweep()
        assert expired.token == token and expired.action == "auth.rotate"
        assert await confirmations.sweep() == []
        status, pending = await confirmations.take(alice, token)
    assert status == "expired" and pending is not None and pending.expiry_reported
