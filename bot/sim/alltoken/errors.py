"""AllToken's errors as the simulator raises and words them: codes, types, field paths."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bot.sim.serving import SimHttpError

_BaseModelT = TypeVar("_BaseModelT", bound=BaseModel)

# AllToken's codes for statuses a fault may name without a code of its own.
DEFAULT_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_balance",
    403: "forbidden",
    404: "not_found",
    409: "duplicate_request",
    410: "image_expired",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "all_providers_failed",
    504: "gateway_timeout",
}


def error_type_for(status: int) -> str:
    """The envelope `type` AllToken uses for an HTTP status."""
    if status in (401, 403):
        return "auth_error"
    if status >= 500:
        return "api_error"
    return "invalid_request_error"


class SimApiError(SimHttpError):
    """Raised by handlers; the middleware renders it as AllToken's error envelope."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        param: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(status, code, message)
        self.param = param
        self.error_type = error_type or error_type_for(status)
        self.headers = headers or {}
        self.extra = extra or {}


def param_from_loc(loc: tuple[int | str, ...]) -> str | None:
    """Turn a pydantic error location into a field path like "messages[0].role"."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
            continue
        # Union branches show up as type names ("str", "list[ContentPart]", "Thinking").
        if not part.isidentifier() or part[:1].isupper() or part in ("str", "int", "bool"):
            break
        path = f"{path}.{part}" if path else part
    return path or None


def validate(model: type[_BaseModelT], body: dict[str, Any]) -> _BaseModelT:
    """`body` as `model`, or AllToken's 400 naming the first bad field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        param = param_from_loc(tuple(first["loc"]))
        raise SimApiError(
            400, "invalid_request", f"{param or 'body'}: {first['msg']}", param=param
        ) from None
