"""A finished answer is freed when the last reference goes, not at the next garbage collection.

httpx ties each Response and its BoundAsyncStream in a reference cycle (encode/httpx#3733), so
without `release` every request leaves ~47 objects for the collector; under a burst those
collections walk every chat in flight. Real wire: the tokenbot client against a local aiohttp
server. The cyclic collector is off while each case runs, so a weak reference that dies proves
the response was freed by reference counting alone.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from aiohttp import web

from bot.core.errors import BackendError, alltoken_error
from bot.core.http import BackendCall
from tests.fakes.local_http import serving

pytestmark = pytest.mark.asyncio


async def _events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for n in range(3):
        await response.write(f'data: {{"n": {n}}}\n\n'.encode())
    await response.write_eof()
    return response


async def _json(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def _refused(request: web.Request) -> web.Response:
    return web.json_response({"error": {"code": "bad_request", "message": "no"}}, status=400)


@pytest.fixture
async def base_url() -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/events", _events)
    app.router.add_get("/json", _json)
    app.router.add_post("/refused", _refused)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def http(tokenbot_http: httpx.AsyncClient) -> httpx.AsyncClient:
    return tokenbot_http


@pytest.fixture
def no_collector() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _call(http: httpx.AsyncClient) -> BackendCall:
    return BackendCall("alltoken", http, alltoken_error)


@pytest.mark.usefixtures("no_collector")
async def test_a_read_stream_is_freed_when_dropped(http: httpx.AsyncClient, base_url: str) -> None:
    async with _call(http).stream("POST", f"{base_url}/events", json={}) as response:
        body = b"".join([chunk async for chunk in response.aiter_bytes()])
        alive = weakref.ref(response)
    del response
    assert body.count(b"data:") == 3
    assert alive() is None


@pytest.mark.usefixtures("no_collector")
async def test_a_plain_answer_is_freed_when_dropped(http: httpx.AsyncClient, base_url: str) -> None:
    response = await _call(http).send("GET", f"{base_url}/json")
    assert response.json() == {"ok": True}
    alive = weakref.ref(response)
    del response
    assert alive() is None


async def test_a_refused_stream_lets_go_of_its_body(http: httpx.AsyncClient, base_url: str) -> None:
    # (The raised error's traceback holds the frame, so only the body's cycle is checked here.)
    seen: list[httpx.Response] = []

    async def keep(response: httpx.Response) -> None:
        seen.append(response)

    http.event_hooks["response"].append(keep)
    with pytest.raises(BackendError, match="no"):
        async with _call(http).stream("POST", f"{base_url}/refused", json={}):
            pass
    assert [r.status_code for r in seen] == [400]
    assert seen[0].is_closed
    assert isinstance(seen[0].stream, httpx.ByteStream)


@pytest.mark.usefixtures("no_collector")
async def test_without_release_httpx_keeps_the_cycle(
    http: httpx.AsyncClient, base_url: str
) -> None:
    # The control: read the same stream with httpx's own context manager (no release), and the
    # response outlives its last reference until the collector runs.
    async with http.stream("POST", f"{base_url}/events", json={}) as response:
        await response.aread()
        alive = weakref.ref(response)
    del response
    assert alive() is not None
    gc.collect()
    assert alive() is None
