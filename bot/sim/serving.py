"""What every simulator does the same way around its routes: serving, request ids, errors.

`SimServer` serves an aiohttp app on a `Listener`, keeps the injectable clock, and runs one
middleware for all three simulators: a request id per request, a count per route, the sim's
own dispatch (faults, auth), and one ladder from exceptions to responses. What differs per
service — the id's length, the error envelope, what an unknown route or a crash looks like —
is a hook each simulator fills in, so each keeps imitating its real service byte for byte.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from bot.sim.listener import Listener

__all__ = [
    "NO_REQUEST_ID_HEADER",
    "REQUEST_ID",
    "Handler",
    "SimHttpError",
    "SimServer",
    "bearer_token",
    "json_object",
    "new_request_id",
    "open_event_stream",
    "request_id",
    "route_template",
]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REQUEST_ID = web.RequestKey("sim_request_id", str)
# Set by a simulator whose answer must go out without the x-request-id header (a quirk).
NO_REQUEST_ID_HEADER = web.RequestKey("sim_no_request_id_header", bool)


class SimHttpError(Exception):
    """An error a simulated service answers with; each simulator renders it in its envelope."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def new_request_id(nbytes: int) -> str:
    """A fresh `req_…` id with `nbytes` random bytes (each service has its own length)."""
    return f"req_{secrets.token_hex(nbytes)}"


def request_id(request: web.Request) -> str:
    """The id the middleware gave this request (also sent as x-request-id)."""
    return request[REQUEST_ID]


def route_template(request: web.Request) -> str:
    """The matched route's template (e.g. `/v1/tasks/{id}`), or the path when none matched."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def bearer_token(request: web.Request) -> str:
    """The token of `Authorization: Bearer <token>`; empty when absent or another scheme."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def json_object(
    request: web.Request,
    *,
    not_json: Exception,
    not_object: Exception,
    empty: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The body as a JSON object; raises the service's own `not_json` / `not_object` error.

    `empty` is what a bodiless request means (None: not an object).
    """
    raw = await request.read()
    try:
        body = json.loads(raw) if raw else empty
    except (ValueError, UnicodeDecodeError):
        raise not_json from None
    if not isinstance(body, dict):
        raise not_object
    return body


SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


async def open_event_stream(
    request: web.Request, headers: Mapping[str, str] | None = None
) -> web.StreamResponse:
    """A prepared 200 event stream; by default the services' usual headers and x-request-id."""
    if headers is None:
        headers = {**SSE_HEADERS, "x-request-id": request_id(request)}
    resp = web.StreamResponse(status=200, headers=headers)
    await resp.prepare(request)
    return resp


class SimServer(ABC):
    """A simulator's serving half: app + listener, clock, and the shared middleware.

    Subclasses set `service_name`, build their app with `self.middleware` and hand it to
    `serve()`, and fill in the hooks below. A handler raises a `SimHttpError` (the service's
    subclass of it) for an error answer; any other exception is a crash.
    """

    service_name = "simulator"

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self.base_url = ""
        self.clock: Callable[[], float] = clock or time.time
        self.app: web.Application
        self._listener: Listener | None = None

    def serve(self, app: web.Application) -> None:
        """Use `app` (built with `self.middleware`) as what `start()` serves."""
        self.app = app
        self._listener = Listener(app)

    # ---- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = a free port); returns the base URL without trailing slash."""
        assert self._listener is not None, "serve() was not called"
        self.base_url = await self._listener.start(host, port)
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        if self._listener is not None:
            await self._listener.stop()

    def now(self) -> float:
        """The simulator's clock (unix seconds); injectable for tests."""
        return self.clock()

    # ---- hooks -----------------------------------------------------------------------------

    def new_request_id(self) -> str:
        """This service's request id."""
        return new_request_id(8)

    @abstractmethod
    def count_request(self, request: web.Request, template: str) -> None:
        """Note one request to `template` in the simulator's stats."""

    async def dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Between the middleware and the route: faults, latency, auth (default: none)."""
        return await handler(request)

    @abstractmethod
    def error_response(self, request: web.Request, exc: SimHttpError) -> web.Response:
        """An error a handler raised, in the service's envelope."""
        ...

    @abstractmethod
    def http_error_response(self, request: web.Request, exc: web.HTTPException) -> web.Response:
        """aiohttp's own 4xx/5xx (unknown route, wrong method, body too large)."""
        ...

    @abstractmethod
    def crash_response(self, request: web.Request) -> web.Response:
        """The 500 for a handler that failed unexpectedly."""
        ...

    # ---- middleware ------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Request id, stats, dispatch and the exception-to-response ladder, for every request."""
        rid = request[REQUEST_ID] = self.new_request_id()
        self.count_request(request, route_template(request))
        try:
            response = await self.dispatch(request, handler)
        except SimHttpError as exc:
            response = self.error_response(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = self.http_error_response(request, exc)
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            # The client left mid-response; aiohttp's own write of this placeholder fails the
            # same way and is treated as a client reset, so nothing is logged as a crash.
            return web.Response(status=499)
        except Exception:
            log.exception("%s simulator handler failed", self.service_name)
            response = self.crash_response(request)
        if not response.prepared and not request.get(NO_REQUEST_ID_HEADER, False):
            response.headers.setdefault("x-request-id", rid)
        return response
