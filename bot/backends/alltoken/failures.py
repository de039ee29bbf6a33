"""AllToken's failures in words: its error codes, its key command, live model alternatives. Pure."""

from __future__ import annotations

from collections.abc import Iterable

from bot.backends.alltoken import catalog
from bot.core.errors import BackendError
from bot.core.failures import generic_failure
from bot.core.messages import Failure

NAME = "AllToken"
KEY_HINT = "Set a new key with `/alltoken-key set <key>` (or `/alltoken-key` for a private form)."

_HINTS = {
    "image_already_retrieved": "AllToken hands an image out only once and it is gone now: "
    "run `/alltoken-image` again.",
    "image_expired": "The image expired on AllToken before it could be fetched: "
    "run `/alltoken-image` again.",
    "model_not_found": "Check the model id with `/alltoken-models` "
    "(add `--type=image` or `--type=video`).",
    "upstream_model_not_found": "Check the model id with `/alltoken-models` "
    "(add `--type=image` or `--type=video`).",
    "upstream_content_violation": "The provider refused this prompt; rephrase it and try again.",
    "upstream_invalid_parameter": "The provider refused a value of this request (see above). "
    "Image-to-video models such as `happyhorse-1.0-i2v` need a picture, which tokenbot does "
    "not send: use `happyhorse-1.0-t2v` or `seedance-1.5-pro` for a prompt alone.",
    "search_unsupported_model": f"Web search works with {', '.join(catalog.SEARCH_MODELS)}.",
}

# A refused key and rate limits read the same for every backend, whatever else the code says.
_GENERIC_FIRST = frozenset({"invalid_api_key", "invalid_token", "unauthorized", "rate_limited"})


def suggest_alternatives(model: str, available: Iterable[str], limit: int = 3) -> list[str]:
    """Other models to try when `model`'s providers all failed: same family first, then others."""
    family = catalog.family_of(model)
    others = [m for m in dict.fromkeys(available) if m != model]
    same = [m for m in others if catalog.family_of(m) == family]
    picked = same[: max(1, limit - 1)] if same else []
    # Then the first model of each other family, so the user gets real variety.
    seen: set[str] = set()
    for m in others:
        fam = catalog.family_of(m)
        if fam == family or fam in seen:
            continue
        seen.add(fam)
        picked.append(m)
        if len(picked) >= limit:
            break
    return picked[:limit]


def _balance_hint(command: str) -> str:
    hint = (
        f"Your {NAME} balance is too low: top up in Settings → Billing at alltoken.ai, "
        "then run the command again."
    )
    if command in ("image", "video"):
        hint += f" {command.capitalize()}s have no OpenClaw Token fallback (it covers chat and search only)."
    return hint


def _providers_hint(alternatives: list[str] | None) -> str:
    if alternatives:
        return (
            "Every provider for this model failed. Try "
            + ", ".join(f"`{m}`" for m in alternatives)
            + "."
        )
    return "Every provider for this model failed. Try another model (see `/alltoken-models`)."


def render_failure(
    error: BackendError, *, command: str = "", alternatives: list[str] | None = None
) -> Failure:
    """A Failure part with a plain-language next step for every AllToken code."""
    failure = generic_failure(error, NAME, KEY_HINT)
    if error.status in (401, 429) or error.code in _GENERIC_FIRST:
        return failure
    hint: str | None = None
    if error.status == 402 or error.code == "insufficient_balance":
        hint = _balance_hint(command)
    elif error.code == "all_providers_failed":
        hint = _providers_hint(alternatives)
    else:
        hint = _HINTS.get(error.code)
    return failure.model_copy(update={"hint": hint}) if hint else failure
