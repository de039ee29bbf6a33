"""Turn a BackendError into what the user reads: the code, the request id, a next step. Pure."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable

from bot.backends.alltoken import catalog
from bot.core.errors import BackendError
from bot.core.messages import Failure

_SERVICE_NAMES = {
    "alltoken": "AllToken",
    "openmarlin": "OpenMarlin",
    "openclaw_token": "OpenClaw Token",
}


# Backends with codes of their own render their failures themselves (see register_renderer).
_RENDERERS: dict[str, Callable[[BackendError], Failure]] = {}


def register_renderer(backend: str, renderer: Callable[[BackendError], Failure]) -> None:
    """Let a backend's family render that backend's failures (its codes and next steps)."""
    _RENDERERS[backend] = renderer


def suggest_alternatives(model: str, available: Iterable[str], limit: int = 3) -> list[str]:
    """Other models to try when `model`'s providers all failed: same family first, then others."""
    family = catalog.family_of(model)
    others = [m for m in dict.fromkeys(available) if m != model]
    same = [m for m in others if catalog.family_of(m) == family]
    different = [m for m in others if catalog.family_of(m) != family]
    picked = same[: max(1, limit - 1)] if same else []
    # Then the first model of each other family, so the user gets real variety.
    seen: set[str] = set()
    for m in different:
        fam = catalog.family_of(m)
        if fam in seen:
            continue
        seen.add(fam)
        picked.append(m)
        if len(picked) >= limit:
            break
    return picked[:limit]


def render_failure(
    error: BackendError,
    *,
    command: str = "",
    alternatives: list[str] | None = None,
) -> Failure:
    """A Failure part with a plain-language next step for every known code."""
    custom = _RENDERERS.get(error.backend)
    if custom is not None:
        return custom(error)
    name = _SERVICE_NAMES.get(error.backend, error.backend)
    code = error.code
    hint: str | None
    message = error.message
    if error.status == 401 or code in ("invalid_api_key", "invalid_token", "unauthorized"):
        message = f"{name} refused your key ({error.message})."
        hint = (
            "Set a new key with `/alltoken-key set <key>` (or `/alltoken-key` for a private form)."
        )
    elif error.status == 402 or code == "insufficient_balance":
        hint = f"Your {name} balance is too low: top up in Settings → Billing at alltoken.ai, then run the command again."
        if command in ("image", "video"):
            hint += f" {command.capitalize()}s have no OpenClaw Token fallback (it covers chat and search only)."
    elif error.status == 429 or code == "rate_limited":
        wait = f" in about {int(error.retry_after)} s" if error.retry_after else " in a minute"
        hint = f"{name} is rate-limiting requests; try again{wait}."
    elif code == "all_providers_failed":
        if alternatives:
            hint = (
                "Every provider for this model failed. Try "
                + ", ".join(f"`{m}`" for m in alternatives)
                + "."
            )
        else:
            hint = (
                "Every provider for this model failed. Try another model (see `/alltoken-models`)."
            )
    elif code == "image_already_retrieved":
        hint = (
            "AllToken hands an image out only once and it is gone now: run `/alltoken-image` again."
        )
    elif code == "image_expired":
        hint = (
            "The image expired on AllToken before it could be fetched: run `/alltoken-image` again."
        )
    elif code in ("model_not_found", "upstream_model_not_found"):
        hint = "Check the model id with `/alltoken-models` (add `--type=image` or `--type=video`)."
    elif code == "upstream_content_violation":
        hint = "The provider refused this prompt; rephrase it and try again."
    elif code == "search_unsupported_model":
        hint = f"Web search works with {', '.join(catalog.SEARCH_MODELS)}."
    elif code == "timeout":
        hint = f"{name} did not answer in time. Try again shortly; if it keeps happening, try a smaller request."
    elif code == "connection_error":
        hint = f"tokenbot could not reach {name}. Try again in a minute."
    elif code == "bad_response":
        hint = f"{name} sent an answer tokenbot could not read. Try again; quote the request id if you report it."
    elif error.status >= 500:
        hint = f"{name} had a server error. Try again in a minute."
    elif error.status == 400:
        param = error.details.get("param")
        hint = f"Check the `{param}` value." if param else "Check the command's arguments."
    else:
        hint = None
    return Failure(code=code, message=message, request_id=error.request_id, hint=hint)


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
