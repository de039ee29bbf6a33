"""Turn a BackendError into what the user reads: the code, the request id, a next step. Pure.

Every family renders its own backend's failures (its codes, its key command); what is the same
for every backend (a refused key, rate limits, time-outs, server errors) lives here, and each
family's renderer falls back to `generic_failure`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from bot.core.errors import BackendError
from bot.core.messages import Failure

FailureRenderer = Callable[[BackendError], Failure]

# Transport and server problems, by code: the same words for every backend ({name} is its name).
_CODE_HINTS = {
    "timeout": "{name} did not answer in time. Try again shortly; if it keeps happening, "
    "try a smaller request.",
    "connection_error": "tokenbot could not reach {name}. Try again in a minute.",
    "bad_response": "{name} sent an answer tokenbot could not read. Try again; quote the "
    "request id if you report it.",
}


def generic_hint(error: BackendError, name: str) -> str | None:
    """A next step that fits any backend, from the status and the transport codes."""
    if error.status == 429 or error.code == "rate_limited":
        wait = f" in about {int(error.retry_after)} s" if error.retry_after else " in a minute"
        return f"{name} is rate-limiting requests; try again{wait}."
    if error.code in _CODE_HINTS:
        return _CODE_HINTS[error.code].format(name=name)
    if error.status >= 500:
        return f"{name} had a server error. Try again in a minute."
    if error.status == 400:
        param = error.details.get("param")
        return f"Check the `{param}` value." if param else "Check the command's arguments."
    return None


def generic_failure(error: BackendError, name: str, key_hint: str | None = None) -> Failure:
    """A Failure for `error` from the backend called `name`; `key_hint` says how to set a new key."""
    message, hint = error.message, generic_hint(error, name)
    if error.status == 401 or error.code in ("invalid_api_key", "invalid_token", "unauthorized"):
        message = f"{name} refused your key ({error.message})."
        hint = key_hint or hint
    return Failure(code=error.code, message=message, request_id=error.request_id, hint=hint)


class HandledFailure(Exception):
    """The handler already told the user; the app only records the outcome."""

    def __init__(self, error: BackendError) -> None:
        self.error = error
        super().__init__(str(error))


def new_error_ref() -> str:
    """A short reference that ties a user's "something went wrong" reply to the logged error."""
    return secrets.token_hex(4)


def unexpected_failure(ref: str) -> Failure:
    """What a user reads when tokenbot itself failed: no traceback, a ref the operator can grep."""
    return Failure(
        code="internal_error",
        message=f"Something went wrong (ref {ref}).",
        hint="Try again; if it keeps happening, give the bot's operator this ref.",
    )
