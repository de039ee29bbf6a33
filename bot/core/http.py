"""The process's one HTTP client and the one way every backend is called and retried.

`BackendCall` sends a request, maps an error answer to `BackendError` with the backend's own
envelope parser, and retries per `RetryPolicy`:

- 429 (the request was refused before any work started, so any request may be resent): wait
  Retry-After, or `default_wait_s` without one, and try again, `max_retries_on_429` times; a
  Retry-After beyond `max_wait_s` is reported instead (longer than a chat user should wait).
- the other TRANSIENT_STATUSES (5xx, and 0: no answer at all) only for a request that is safe to
  resend (`RESENDABLE_METHODS`, or one carrying an Idempotency-Key), `max_retries` times, with
  exponential backoff from `backoff_s` (or a longer Retry-After within the cap).
- nothing else.

Streams are retried only until their headers arrive: once a body is being read, a resend could
bill a second answer, so failures from then on are reported.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.cookiejar import Cookie, CookieJar
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

from bot.core.errors import Backend, BackendError, protocol_error, transport_error

# The one set of statuses worth trying again: rate limited, the gateway or upstream failing for
# a moment, or (0) no HTTP answer at all: a timeout, a dropped connection. Polling jobs use it
# too (their 0 also covers an answer that could not be read).
TRANSIENT_STATUSES: frozenset[int] = frozenset({0, 429, 500, 502, 503, 504})

# Methods whose resend changes nothing the first send did not. DELETE is left out on purpose: a
# resent revoke answers "already revoked" instead of the first answer. Every PATCH the backends
# take sets absolute values, so resending one is harmless.
RESENDABLE_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "PATCH"})
IDEMPOTENCY_HEADER = "Idempotency-Key"

Sleep = Callable[[float], Awaitable[None]]
ErrorEnvelope = Callable[[httpx.Response, bytes | None], BackendError]


class NoCookies(CookieJar):
    """A cookie jar that keeps nothing: one client serves every user, so a cookie a backend
    set on one user's answer must not ride along on the next user's request."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        """Keep no cookie from an answer."""

    def set_cookie(self, cookie: Cookie) -> None:
        """Keep no cookie set by hand either."""


@functools.lru_cache(maxsize=512)
def parsed_url(url: str) -> httpx.URL:
    """`url` parsed once: httpx's parser is pure Python (12 µs of the 28 µs it takes to build a
    chat request), and each backend calls the same few endpoints. httpx.URL is immutable."""
    return httpx.URL(url)


# What a finished response's body stream becomes (see `release`): empty, and holding nothing.
_RELEASED = httpx.ByteStream(b"")


def release(response: httpx.Response) -> None:
    """Drop httpx's Response <-> BoundAsyncStream reference cycle once the body is closed
    (encode/httpx#3733), so the response and its aiohttp objects (~47 per request) are freed
    at once instead of waiting for a garbage collection, which under a burst walks every
    chat in flight."""
    if response.is_closed:
        response.stream = _RELEASED


class NoCookieStore(httpx.Cookies):
    """httpx's cookie store over NoCookies, without the work per answer: httpx builds a urllib
    request and an email-message copy of the headers for every answer (17 µs) before asking
    its jar to keep anything, which NoCookies then refuses."""

    def __init__(self) -> None:
        super().__init__(NoCookies())

    def extract_cookies(self, response: httpx.Response) -> None:
        """Keep no cookie from an answer, and build nothing to find one."""


_NO_COOKIE_STORE = NoCookieStore()


class ReleasingClient(HttpxAiohttpClient):
    """The httpx-over-aiohttp client whose read answers are released as soon as they return,
    and that keeps no cookies (NoCookieStore)."""

    @property
    def cookies(self) -> httpx.Cookies:
        """Always empty: one client serves every user (see NoCookies)."""
        return _NO_COOKIE_STORE

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        """Ignored: client-wide cookies would ride on every user's requests."""

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        """`AsyncClient.send`; an answer already read (not streamed) is released."""
        response = await super().send(request, **kwargs)
        release(response)
        return response


def build_http_client(
    timeout_s: float = 60.0, event_hooks: dict[str, list[Callable[..., Any]]] | None = None
) -> httpx.AsyncClient:
    """The shared AsyncClient: pooled, generous limits (hundreds of concurrent chats), and no
    cookies kept between requests (every call carries its own key).

    The httpx API over aiohttp's connection pool (httpx-aiohttp): with hundreds of concurrent
    streams httpcore's pool spent most of the time (bench: 500 chats took 4.2 s instead of
    1.4 s); aiohttp is already a dependency of both platform SDKs.
    """
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200)

    def session() -> aiohttp.ClientSession:
        # aiohttp keeps cookies too (those from host names), below httpx's own jar.
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            ssl=httpx.create_ssl_context(),
        )
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    return ReleasingClient(
        transport=AiohttpTransport(limits=limits, client=session),
        event_hooks=event_hooks,
        timeout=httpx.Timeout(timeout_s, connect=10.0),
        limits=limits,
        headers={"User-Agent": "tokenbot/0.1"},
        follow_redirects=False,
    )


def read_json(backend: Backend, response: httpx.Response) -> Any:
    """The JSON body of `response`; BackendError(bad_response) when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        raise protocol_error(
            backend,
            f"unreadable JSON from {response.request.url.path}",
            response.headers.get("x-request-id"),
        ) from None


def is_transient(error: BackendError) -> bool:
    """Whether `error` may go away by itself (see TRANSIENT_STATUSES)."""
    return error.status in TRANSIENT_STATUSES


def is_resendable(method: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether resending this request is harmless: a safe method or an Idempotency-Key."""
    if method.upper() in RESENDABLE_METHODS:
        return True
    return any(name.lower() == IDEMPOTENCY_HEADER.lower() for name in headers or {})


@dataclass
class RetryCount:
    """Retries spent so far on one request, per kind."""

    rate_limited: int = 0
    transient: int = 0


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a backend request is tried again (see the module docstring)."""

    max_retries_on_429: int = 1
    default_wait_s: float = 1.0
    max_wait_s: float = 30.0
    # 5xx and transport errors of resendable requests. 0 by default: AllToken's advice for a
    # 503 is another model, not a resend, and the polling jobs back off on their own.
    max_retries: int = 0
    backoff_s: float = 0.5

    def wait_for(self, error: BackendError) -> float | None:
        """Seconds to wait before retrying a 429, or None when it must not be retried."""
        if error.status != 429:
            return None
        wait = error.retry_after if error.retry_after is not None else self.default_wait_s
        if wait > self.max_wait_s:
            return None  # longer than a chat user should wait: report it instead
        return wait

    def next_wait(
        self, error: BackendError, *, resendable: bool, spent: RetryCount
    ) -> float | None:
        """Seconds to wait before the next try of a request that failed with `error`, counting
        the retry in `spent`; None when the error is final."""
        if error.status == 429:
            wait = self.wait_for(error)
            if wait is None or spent.rate_limited >= self.max_retries_on_429:
                return None
            spent.rate_limited += 1
            return wait
        if not (resendable and is_transient(error)) or spent.transient >= self.max_retries:
            return None
        if error.retry_after is not None and error.retry_after > self.max_wait_s:
            return None
        spent.transient += 1
        backoff = self.backoff_s * 2 ** (spent.transient - 1)
        return max(backoff, error.retry_after or 0.0)


DEFAULT_RETRY = RetryPolicy()


@dataclass(frozen=True)
class BackendCall:
    """One backend's way of calling HTTP: its name, its error envelope, its retry policy."""

    backend: Backend
    http: httpx.AsyncClient
    to_error: ErrorEnvelope
    policy: RetryPolicy = DEFAULT_RETRY
    # Who failed, in transport error messages ("the OpenClaw Token proxy"); default the backend.
    label: str | None = None
    # Error codes that are business answers whatever their status ("spend limit reached"):
    # resending cannot change them.
    final_codes: frozenset[str] = frozenset()
    sleep: Sleep = field(default=asyncio.sleep, repr=False)

    async def send(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        accept: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """One request, retried per the policy; error statuses not in `accept` raise.

        `timeout` overrides the client's for this call (None: the client's own).
        """
        resendable = is_resendable(method, headers)
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        spent = RetryCount()
        while True:
            try:
                response = await self.http.request(
                    method, parsed_url(url), json=json, params=params, headers=headers, **extra
                )
            except httpx.HTTPError as exc:
                error = self._transport(exc)
            else:
                if response.status_code < 400 or response.status_code in accept:
                    return response
                error = self.to_error(response, None)
            await self._wait_or_raise(error, resendable, spent)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A streamed answer, retried per the policy until its headers arrive, never after.

        Transport errors while the caller reads the body become BackendError too.
        """
        resendable = is_resendable(method, headers)
        spent = RetryCount()
        while True:
            request = self.http.build_request(method, parsed_url(url), json=json, headers=headers)
            try:
                response = await self.http.send(request, stream=True)
                if response.status_code < 400:
                    break
                try:
                    error = self.to_error(response, await response.aread())
                finally:
                    await response.aclose()
                    release(response)
            except httpx.HTTPError as exc:
                error = self._transport(exc)
            await self._wait_or_raise(error, resendable, spent)
        try:
            yield response
        except httpx.HTTPError as exc:
            raise self._transport(exc) from None
        finally:
            await response.aclose()
            release(response)

    def _transport(self, exc: httpx.HTTPError) -> BackendError:
        return transport_error(self.backend, exc, self.label)

    async def _wait_or_raise(
        self, error: BackendError, resendable: bool, spent: RetryCount
    ) -> None:
        wait = None
        if error.code not in self.final_codes:
            wait = self.policy.next_wait(error, resendable=resendable, spent=spent)
        if wait is None:
            raise error
        await self.sleep(wait)


@dataclass(frozen=True)
class PollBackoff:
    """How a polling job rides out transient errors: back off, give up after `max_errors`."""

    base_s: float = 2.0
    cap_s: float = 30.0
    max_errors: int = 6

    def wait_after(self, error: BackendError, errors_so_far: int) -> float | None:
        """Seconds to wait after the `errors_so_far`-th error in a row (counting this one), or
        None when the job should fail with it."""
        if not is_transient(error) or errors_so_far > self.max_errors:
            return None
        return min(error.retry_after or self.base_s * errors_so_far, self.cap_s)
