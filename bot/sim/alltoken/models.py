"""The AllToken simulator's model table: model metadata, prices and video capabilities.

Model ids and allowed values come from bot.backends.alltoken.catalog; what the catalog does not know (prices,
brands, display names) is invented here, deterministically, for the simulator only.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from bot.backends.alltoken import catalog

# Search models the catalog lists that are not in its chat list; the gateway serves them too.
EXTRA_CHAT_MODELS: tuple[str, ...] = tuple(
    m for m in catalog.SEARCH_MODELS if m not in catalog.CHAT_MODELS
)
SIM_CHAT_MODELS: tuple[str, ...] = catalog.CHAT_MODELS + EXTRA_CHAT_MODELS

# USD per 1M tokens (input, output). Invented but plausible; gpt-5.4-mini matches the
# documented SSE cost line (0.0002 / 0.00125 per 1K).
CHAT_PRICES_PER_M: dict[str, tuple[Decimal, Decimal]] = {
    "gpt-5.4-nano": (Decimal("0.05"), Decimal("0.40")),
    "gpt-5.4-mini": (Decimal("0.20"), Decimal("1.25")),
    "gpt-5.4": (Decimal("1.25"), Decimal("10.00")),
    "gpt-5.4-pro": (Decimal("15.00"), Decimal("120.00")),
    "gpt-5.5": (Decimal("2.50"), Decimal("15.00")),
    "claude-haiku-4-5": (Decimal("1.00"), Decimal("5.00")),
    "claude-sonnet-4-6": (Decimal("3.00"), Decimal("15.00")),
    "claude-opus-4-7": (Decimal("15.00"), Decimal("75.00")),
    "gemini-3-flash-preview": (Decimal("0.30"), Decimal("2.50")),
    "gemini-3.1-pro-preview": (Decimal("1.25"), Decimal("10.00")),
    "deepseek-v4-pro": (Decimal("0.55"), Decimal("2.19")),
    "deepseek-v4-flash": (Decimal("0.14"), Decimal("0.56")),
    "deepseek-v3.2": (Decimal("0.28"), Decimal("0.42")),
    "qwen3.6-flash": (Decimal("0.05"), Decimal("0.40")),
    "qwen3.6-max-preview": (Decimal("1.60"), Decimal("6.40")),
    "qwen3.6-plus": (Decimal("0.40"), Decimal("1.20")),
    "qwen3.6-27b": (Decimal("0.20"), Decimal("0.60")),
    "glm-5.1": (Decimal("0.60"), Decimal("2.20")),
    "glm-4.7-flash": (Decimal("0.07"), Decimal("0.40")),
    "kimi-k2.6": (Decimal("0.60"), Decimal("2.50")),
    "minimax-m2.7": (Decimal("0.30"), Decimal("1.20")),
    "gpt-5.3-codex": (Decimal("1.25"), Decimal("10.00")),
    "qwen3-coder-next": (Decimal("0.30"), Decimal("1.50")),
}
# Models added to the catalog later still get a price instead of a KeyError.
DEFAULT_CHAT_PRICE_PER_M: tuple[Decimal, Decimal] = (Decimal("1.00"), Decimal("4.00"))

# USD per image by quality (gpt-image-2) or flat (wan).
IMAGE_PRICES: dict[str, dict[str, Decimal]] = {
    "gpt-image-2": {
        "low": Decimal("0.011"),
        "medium": Decimal("0.042"),
        "high": Decimal("0.167"),
        "auto": Decimal("0.042"),
    },
    "wan2.7-image": {"*": Decimal("0.030")},
    "wan2.7-image-pro": {"*": Decimal("0.060")},
}
# USD per second of 480p video; 720p costs 2x, 1080p 4x.
VIDEO_PRICES_PER_S: dict[str, Decimal] = {
    "seedance-1.5-pro": Decimal("0.020"),
    "seedance-2.0": Decimal("0.050"),
    "happyhorse-1.0-t2v": Decimal("0.030"),
    "happyhorse-1.0-i2v": Decimal("0.030"),
}
_RESOLUTION_FACTOR = {"480p": Decimal(1), "720p": Decimal(2), "1080p": Decimal(4)}

PriceFieldStyle = Literal["input_output", "prompt_completion"]
# The catalog's real price field names are unconfirmed, so the simulator serves both: models
# at even positions of SIM_CHAT_MODELS use input_price/output_price, odd ones
# prompt_price/completion_price. Clients must cope with either.
PRICE_FIELD_STYLE: dict[str, PriceFieldStyle] = {
    model: ("input_output" if i % 2 == 0 else "prompt_completion")
    for i, model in enumerate(SIM_CHAT_MODELS)
}

_BRANDS: dict[str, str] = {
    "gpt": "OpenAI",
    "claude": "Anthropic",
    "gemini": "Google",
    "deepseek": "DeepSeek",
    "qwen": "Alibaba",
    "glm": "Zhipu",
    "kimi": "Moonshot",
    "minimax": "MiniMax",
    "wan": "Alibaba",
    "seedance": "ByteDance",
    "happyhorse": "HappyHorse",
}
# Chat models that accept images in messages (modality "vision").
_VISION_FAMILIES = ("gpt", "claude", "gemini", "kimi")
_EPOCH = 1_767_225_600  # 2026-01-01T00:00:00Z; model "created" stamps count days from it.


def chat_price_per_m(model: str) -> tuple[Decimal, Decimal]:
    """USD per 1M (input, output) tokens for a chat model."""
    return CHAT_PRICES_PER_M.get(model, DEFAULT_CHAT_PRICE_PER_M)


def image_price(model: str, quality: str, n: int) -> Decimal:
    """USD for `n` images of `model` at `quality`."""
    table = IMAGE_PRICES.get(model, {"*": Decimal("0.040")})
    return table.get(quality, table.get("*", Decimal("0.040"))) * n


def video_price(model: str, seconds: int, resolution: str) -> Decimal:
    """USD for a video of `seconds` at `resolution`."""
    per_s = VIDEO_PRICES_PER_S.get(model, Decimal("0.040"))
    return per_s * seconds * _RESOLUTION_FACTOR.get(resolution, Decimal(1))


def _series(model: str, family: str) -> str:
    version = re.search(r"\d+(?:\.\d+)?", model)
    return f"{family}-{version.group(0)}" if version else family


def _display_name(model: str) -> str:
    parts = model.replace("_", "-").split("-")
    return " ".join(
        p.upper() if p in ("gpt", "glm", "t2v", "i2v") else p.capitalize() for p in parts
    )


def _base_info(model: str, index: int, modality: str) -> dict[str, Any]:
    family = catalog.family_of(model)
    brand = _BRANDS.get(family, family.capitalize())
    return {
        "id": model,
        "object": "model",
        "created": _EPOCH + index * 86_400,
        "owned_by": brand.lower(),
        "modality": modality,
        "display_name": _display_name(model),
        "brand": brand,
        "family": family,
        "series": _series(model, family),
    }


def chat_model_info(model: str) -> dict[str, Any]:
    """ModelInfo for a chat model (modality text or vision)."""
    index = SIM_CHAT_MODELS.index(model) if model in SIM_CHAT_MODELS else 0
    vision = catalog.family_of(model) in _VISION_FAMILIES
    info = _base_info(model, index, "vision" if vision else "text")
    info.update(
        description=f"{info['display_name']} served through the AllToken simulator.",
        input_modalities=["text", "image"] if vision else ["text"],
        output_modalities=["text"],
    )
    return info


def image_model_info(model: str) -> dict[str, Any]:
    """ModelInfo for an image generation model."""
    info = _base_info(model, 100 + catalog.IMAGE_MODELS.index(model), "image")
    info.update(
        description=f"{info['display_name']} text-to-image generation (simulated).",
        input_modalities=["text"],
        output_modalities=["image"],
    )
    return info


def video_capabilities(model: str) -> dict[str, Any]:
    """The `capabilities` block of a video model, built from the catalog's allowed values."""
    rng = catalog.duration_range(model)
    default = min(max(catalog.DEFAULT_VIDEO_DURATION, rng.min), rng.max)
    return {
        "ratios": {"values": list(catalog.VIDEO_RATIOS), "default": catalog.DEFAULT_VIDEO_RATIO},
        "resolutions": {
            "values": list(catalog.VIDEO_RESOLUTIONS),
            "default": catalog.DEFAULT_VIDEO_RESOLUTION,
        },
        "duration": {
            "type": "range",
            "min": rng.min,
            "max": rng.max,
            "step": 1,
            "default": default,
            "supports_auto": rng.auto,
        },
        "features": {
            "generate_audio": True,
            "return_last_frame": True,
            "watermark": True,
            "seed": True,
        },
        "input_types": ["image_first_frame"] if model.endswith("-i2v") else ["text"],
    }


def video_model_info(model: str, *, with_capabilities: bool) -> dict[str, Any]:
    """ModelInfo for a video model; capabilities only on /v1/videos/models (omitempty)."""
    info = _base_info(model, 200 + catalog.VIDEO_MODELS.index(model), "video")
    image_input = model.endswith("-i2v")
    info.update(
        description=f"{info['display_name']} video generation (simulated).",
        input_modalities=["text", "image"] if image_input else ["text"],
        output_modalities=["video"],
    )
    if with_capabilities:
        info["capabilities"] = video_capabilities(model)
    return info


def _price_str(value: Decimal) -> str:
    return f"{value:.4f}"


def catalog_entry(model: str) -> dict[str, Any] | None:
    """The public catalog record (`/api-account/models/{id}`), prices as strings per 1M tokens."""
    if model in SIM_CHAT_MODELS:
        entry = chat_model_info(model)
        p_in, p_out = chat_price_per_m(model)
        entry["price_unit"] = "USD per 1M tokens"
        if PRICE_FIELD_STYLE[model] == "input_output":
            entry.update(input_price=_price_str(p_in), output_price=_price_str(p_out))
        else:
            entry.update(prompt_price=_price_str(p_in), completion_price=_price_str(p_out))
        return entry
    if model in catalog.IMAGE_MODELS:
        entry = image_model_info(model)
        entry.update(
            price_unit="USD per image", image_price=_price_str(image_price(model, "auto", 1))
        )
        return entry
    if model in catalog.VIDEO_MODELS:
        entry = video_model_info(model, with_capabilities=False)
        entry.update(
            price_unit="USD per second (480p)",
            video_price=_price_str(VIDEO_PRICES_PER_S.get(model, Decimal("0.040"))),
        )
        return entry
    return None


def all_models() -> list[dict[str, Any]]:
    """What /v1/models lists: text, vision, image and video models together (spec R1 2026-05-14)."""
    return (
        [chat_model_info(m) for m in SIM_CHAT_MODELS]
        + [image_model_info(m) for m in catalog.IMAGE_MODELS]
        + [video_model_info(m, with_capabilities=False) for m in catalog.VIDEO_MODELS]
    )
