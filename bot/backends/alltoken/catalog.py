"""What tokenbot knows about AllToken's models without asking: families, defaults, allowed values.

Pure data and small pure functions, shared by the router, the services and the simulator so
there is one place to change when AllToken adds a model. The live model lists (cached by the
service) extend this; they never have to be fetched to classify a message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_CHAT_MODEL = "gpt-5.4-mini"
DEFAULT_SEARCH_MODEL = "deepseek-v4-pro"
DEFAULT_IMAGE_MODEL = "gpt-image-2"
DEFAULT_VIDEO_MODEL = "seedance-1.5-pro"

CHAT_MODELS: tuple[str, ...] = (
    "gpt-5.4-nano",
    "gpt-5.4-mini",
    "gpt-5.4",
    "gpt-5.4-pro",
    "gpt-5.5",
    "claude-haiku-4-5",
    "claude-sonnet-4-6",
    "claude-opus-4-7",
    "gemini-3-flash-preview",
    "gemini-3.1-pro-preview",
    "deepseek-v4-pro",
    "deepseek-v4-flash",
    "deepseek-v3.2",
    "qwen3.6-flash",
    "qwen3.6-max-preview",
    "glm-5.1",
    "glm-4.7-flash",
    "kimi-k2.6",
    "minimax-m2.7",
    "gpt-5.3-codex",
    "qwen3-coder-next",
)
IMAGE_MODELS: tuple[str, ...] = ("gpt-image-2", "wan2.7-image", "wan2.7-image-pro")
VIDEO_MODELS: tuple[str, ...] = (
    "seedance-1.5-pro",
    "seedance-2.0",
    "happyhorse-1.0-t2v",
    "happyhorse-1.0-i2v",
)

# Only these families honour enable_search (verified by AllToken's skill, 2026-05-12).
SEARCH_FAMILIES: tuple[str, ...] = ("deepseek", "qwen")
SEARCH_MODELS: tuple[str, ...] = (
    "deepseek-v4-pro",
    "deepseek-v3.2",
    "qwen3.6-flash",
    "qwen3.6-max-preview",
    "qwen3.6-plus",
    "qwen3.6-27b",
)

IMAGE_SIZES: tuple[str, ...] = ("1024x1024", "1536x1024", "1024x1536", "auto")
IMAGE_QUALITIES: tuple[str, ...] = ("low", "medium", "high", "auto")
DEFAULT_IMAGE_SIZE = "1024x1024"
DEFAULT_IMAGE_QUALITY = "low"
VIDEO_RATIOS: tuple[str, ...] = ("16:9", "9:16", "4:3", "3:4", "21:9", "1:1", "adaptive")
VIDEO_RESOLUTIONS: tuple[str, ...] = ("480p", "720p", "1080p")
DEFAULT_VIDEO_DURATION = 5
DEFAULT_VIDEO_RATIO = "16:9"
DEFAULT_VIDEO_RESOLUTION = "480p"
MAX_PROMPT_CHARS = 32_000

# Model-id families: a word is read as a model id only if it starts with one of these
# prefixes *and* has the shape of an id (a version digit after the family name). This is
# what makes "claude-like answers please" a prompt and "claude-sonnet-4-6 hi" a model.
_FAMILY_PREFIXES = (
    "gpt-",
    "claude-",
    "gemini-",
    "deepseek-",
    "qwen",
    "glm-",
    "kimi-",
    "minimax-",
    "o1",
    "o3",
    "o4",
    "llama",
    "mistral-",
    "grok-",
)
_MODEL_ID_SHAPE = re.compile(
    r"^(?:gpt|claude|gemini|deepseek|qwen|glm|kimi|minimax|llama|mistral|grok)"
    r"[a-z0-9.\-]*\d[a-z0-9.\-]*$"
    r"|^o[134](?:-[a-z0-9.]+)*$"
)


def family_of(model: str) -> str:
    """The family name of a model id ("claude-sonnet-4-6" -> "claude", "qwen3.6-flash" -> "qwen")."""
    m = re.match(r"[a-z]+", model.lower())
    return m.group(0) if m else model.lower()


def looks_like_model_id(word: str) -> bool:
    """True when `word` has the shape of a model id of a known family (no network needed)."""
    w = word.lower()
    return w.startswith(_FAMILY_PREFIXES) and bool(_MODEL_ID_SHAPE.match(w))


def supports_search(model: str) -> bool:
    """Whether AllToken honours enable_search for this model (DeepSeek and Qwen only)."""
    return family_of(model) in SEARCH_FAMILIES


@dataclass(frozen=True)
class DurationRange:
    """Allowed video durations in seconds; `auto` allows -1 (the model picks)."""

    min: int
    max: int
    auto: bool = False

    def allows(self, seconds: int) -> bool:
        """Whether `seconds` is an accepted duration."""
        return (self.auto and seconds == -1) or self.min <= seconds <= self.max

    def describe(self) -> str:
        """Human form, e.g. "4-12 seconds (or -1 for auto)"."""
        tail = " (or -1 for auto)" if self.auto else ""
        return f"{self.min}-{self.max} seconds{tail}"


# seedance-1.5-pro's range is documented (4-12 or -1); the others are the gateway's UI hints
# and are replaced by the live /v1/videos/models capabilities when those are cached.
VIDEO_DURATIONS: dict[str, DurationRange] = {
    "seedance-1.5-pro": DurationRange(4, 12, auto=True),
    "seedance-2.0": DurationRange(4, 15, auto=True),
    "happyhorse-1.0-t2v": DurationRange(5, 10),
    "happyhorse-1.0-i2v": DurationRange(5, 10),
}
DEFAULT_DURATION_RANGE = DurationRange(1, 60, auto=True)


def duration_range(model: str, live: dict[str, DurationRange] | None = None) -> DurationRange:
    """The allowed durations for a video model, preferring live capabilities."""
    if live and model in live:
        return live[model]
    return VIDEO_DURATIONS.get(model, DEFAULT_DURATION_RANGE)
