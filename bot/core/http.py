"""The process's one HTTP client and its one retry policy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_aiohttp import HttpxAiohttpClient

from bot.core.errors import BackendError


def build_http_client(
    timeout_s: float = 60.0, event_hooks: dict[str, list[Callable[..., Any]]] | None = None
) -> httpx.AsyncClient:
    """The shared AsyncClient: pooled, generous limits (hundreds of concurrent chats).

    The httpx API over aiohttp's connection pool (httpx-aiohttp): with hundreds of concurrent
    streams httpcore's pool spent most of the time (bench: 500 chats took 4.2 s instead of
    1.4 s); aiohttp is already a dependency of both platform SDKs.
    """
    return HttpxAiohttpClient(
        event_hooks=event_hooks,
        timeout=httpx.Timeout(timeout_s, connect=10.0),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
        headers={"User-Agent": "tokenbot/0.1"},
        follow_redirects=False,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """429 handling for every backend: wait Retry-After (capped) and try again, once."""

    max_retries_on_429: int = 1
    default_wait_s: float = 1.0
    max_wait_s: float = 30.0

    def wait_for(self, error: BackendError) -> float | None:
        """Seconds to wait before retrying `error`, or None when it must not be retried."""
        if error.status != 429:
            return None
        wait = error.retry_after if error.retry_after is not None else self.default_wait_s
        if wait > self.max_wait_s:
            return None  # longer than a chat user should wait: report it instead
        return wait


DEFAULT_RETRY = RetryPolicy()


async def with_429_retry(
    call: Callable[[], Awaitable[httpx.Response]],
    to_error: Callable[[httpx.Response], BackendError],
    policy: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> httpx.Response:
    """Run `call`; on 429 wait and retry per `policy`; any other error status raises.

    Only use this for requests that are safe to resend after a 429: a 429 means the request
    was refused before any work started, so even a paid POST may be resent.
    """
    attempts = 0
    while True:
        response = await call()
        if response.status_code < 400:
            return response
        error = to_error(response)
        wait = policy.wait_for(error)
        if wait is None or attempts >= policy.max_retries_on_429:
            raise error
        attempts += 1
        await sleep(wait)
