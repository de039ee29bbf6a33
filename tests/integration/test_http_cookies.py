"""The shared backend client keeps no cookies: one client serves every user, so a cookie a
backend set on one user's answer must not ride on another user's request (real HTTP)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from tests.fakes.local_http import serving


@pytest.fixture
async def cookie_server() -> AsyncIterator[tuple[str, list[str]]]:
    """/set answers with a Set-Cookie; /echo records the Cookie header it was sent."""
    seen: list[str] = []

    async def set_cookie(_request: web.Request) -> web.Response:
        response = web.json_response({"ok": True})
        response.set_cookie("session", "alice-session", path="/")
        return response

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie", ""))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/set", set_cookie)
    app.router.add_get("/echo", echo)
    async with serving(app) as port:
        # A host name, not an IP: aiohttp's own jar keeps cookies only from host names.
        yield f"http://localhost:{port}", seen


@pytest.fixture
def client(tokenbot_http: httpx.AsyncClient) -> httpx.AsyncClient:
    return tokenbot_http


async def test_a_cookie_from_one_answer_is_not_sent_with_the_next_request(
    cookie_server: tuple[str, list[str]], client: httpx.AsyncClient
) -> None:
    base, seen = cookie_server
    first = await client.get(f"{base}/set")
    assert first.status_code == 200 and "alice-session" in first.headers["set-cookie"]
    assert (await client.get(f"{base}/echo")).status_code == 200
    assert seen == [""]
    assert not client.cookies


async def test_cookies_set_on_the_client_are_not_sent_either(
    cookie_server: tuple[str, list[str]], client: httpx.AsyncClient
) -> None:
    base, seen = cookie_server
    client.cookies = {"session": "set-by-hand"}
    assert (await client.get(f"{base}/echo")).status_code == 200
    assert seen == [""]
    assert not client.cookies
