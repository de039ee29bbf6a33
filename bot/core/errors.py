"""One exception for every backend failure, built from each backend's error envelope."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

import aiohttp
import httpx

Backend = Literal["alltoken", "openmarlin", "openclaw_token"]


class BackendError(Exception):
    """A backend call failed: HTTP status, the backend's code and request id, and a next step."""

    def __init__(
        self,
        backend: Backend,
        status: int,
        code: str,
        message: str,
        *,
        request_id: str | None = None,
        task_id: str | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        self.backend = backend
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.task_id = task_id
        self.retry_after = retry_after
        self.details = details or {}
        super().__init__(f"{backend} {status} {code}: {message} (request {request_id})")


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (integer or float form); None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def openai_error(
    backend: Backend, response: httpx.Response, body: bytes | None = None
) -> BackendError:
    """Map the OpenAI-style `{"error": {code, type, message, param, request_id[, task_id]}}`
    envelope (AllToken, and the OpenClaw Token proxy that answers like it).

    Some errors put request_id at the top level; both places are read.
    """
    raw = body if body is not None else response.content
    payload = _json_or_none(raw)
    err: dict[str, Any] = {}
    if isinstance(payload, dict):
        inner = payload.get("error")
        if isinstance(inner, dict):
            err = inner
        elif isinstance(inner, str):
            err = {"code": inner, "message": payload.get("message") or inner}
    code = str(err.get("code") or _default_code(response.status_code))
    message = str(err.get("message") or _default_message(response, raw))
    request_id = err.get("request_id") or (
        payload.get("request_id") if isinstance(payload, dict) else None
    )
    request_id = request_id or response.headers.get("x-request-id")
    return BackendError(
        backend,
        response.status_code,
        code,
        message,
        request_id=str(request_id) if request_id else None,
        task_id=err.get("task_id"),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        details={k: v for k, v in err.items() if k in ("type", "param")},
    )


def alltoken_error(response: httpx.Response, body: bytes | None = None) -> BackendError:
    """AllToken's error envelope (see openai_error) as a BackendError."""
    return openai_error("alltoken", response, body)


def _default_code(status: int) -> str:
    return {
        400: "invalid_request",
        401: "invalid_api_key",
        402: "insufficient_balance",
        403: "forbidden",
        404: "not_found",
        409: "conflict",
        410: "gone",
        429: "rate_limited",
        500: "server_error",
        502: "bad_gateway",
        503: "service_unavailable",
        504: "gateway_timeout",
    }.get(status, f"http_{status}")


def _default_message(response: httpx.Response, raw: bytes) -> str:
    text = raw[:200].decode("utf-8", "replace").strip()
    return text or response.reason_phrase or f"HTTP {response.status_code}"


def transport_error(backend: Backend, exc: Exception, label: str | None = None) -> BackendError:
    """A timeout or connection failure, as a BackendError with status 0.

    `label` names who failed in the message ("the OpenClaw Token proxy"); default the backend.
    """
    where = label or backend
    cause = exc.__cause__
    # The aiohttp transport reports a dropped connection as ConnectTimeout; its cause says what
    # really happened, so a reset mid-stream is not called a time-out.
    if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(
        cause, asyncio.TimeoutError
    ):
        return BackendError(
            backend,
            0,
            "connection_error",
            f"the connection to {where} was lost: {type(cause).__name__}",
        )
    if isinstance(exc, httpx.TimeoutException) or isinstance(cause, asyncio.TimeoutError):
        return BackendError(backend, 0, "timeout", f"{where} did not answer in time")
    return BackendError(
        backend, 0, "connection_error", f"could not reach {where}: {type(exc).__name__}"
    )


def protocol_error(backend: Backend, what: str, request_id: str | None = None) -> BackendError:
    """The backend answered with something tokenbot cannot read (malformed JSON or SSE)."""
    return BackendError(backend, 0, "bad_response", what, request_id=request_id)
