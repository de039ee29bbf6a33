"""Cost arithmetic, pure. All money is Decimal USD.

Units, in one place:
- The SSE cost line after `data: [DONE]` carries prices as strings in USD per 1K tokens and
  the authoritative `cost` of the request. That figure always wins.
- The public catalog (`/api-account/models/{id}`) has unconfirmed field names
  (input_price/output_price or prompt_price/completion_price). AllToken's own recipe reads them
  as USD per 1M tokens, and so does tokenbot: CATALOG_UNIT_TOKENS below is that assumption.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel

# The cost line is part of the OpenAI-compatible stream; re-exported for the AllToken modules.
from bot.core.openai_chat import CostLine
from bot.core.openai_chat import parse_cost_comment as parse_cost_comment

CATALOG_UNIT_TOKENS = 1_000_000  # catalog prices are USD per this many tokens (assumed)
SSE_UNIT_TOKENS = 1_000  # SSE cost line prices are USD per this many tokens (documented)


class Prices(BaseModel):
    """Per-token prices of one model, normalised to USD per 1M tokens."""

    model: str
    input_per_1m: Decimal
    output_per_1m: Decimal
    source: str  # "catalog" or "sse"


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def catalog_prices(model: str, data: dict[str, Any]) -> Prices | None:
    """Prices from a catalog entry, accepting either naming; None when neither is present."""
    p_in = _decimal(data.get("input_price"))
    p_out = _decimal(data.get("output_price"))
    if p_in is None and p_out is None:
        p_in = _decimal(data.get("prompt_price"))
        p_out = _decimal(data.get("completion_price"))
    if p_in is None and p_out is None:
        pricing = data.get("pricing")
        if isinstance(pricing, dict):
            return catalog_prices(model, pricing)
        return None
    scale = Decimal(1_000_000) / Decimal(CATALOG_UNIT_TOKENS)
    return Prices(
        model=model,
        input_per_1m=(p_in or Decimal(0)) * scale,
        output_per_1m=(p_out or Decimal(0)) * scale,
        source="catalog",
    )


def prices_from_cost_line(model: str, line: CostLine) -> Prices | None:
    """Per-1M prices implied by an SSE cost line (its prices are per 1K)."""
    if line.input_price is None or line.output_price is None:
        return None
    scale = Decimal(1_000_000) / Decimal(SSE_UNIT_TOKENS)
    return Prices(
        model=model,
        input_per_1m=line.input_price * scale,
        output_per_1m=line.output_price * scale,
        source="sse",
    )


def cost_of(prompt_tokens: int, completion_tokens: int, prices: Prices) -> Decimal:
    """USD cost of a call with these token counts."""
    million = Decimal(1_000_000)
    return (
        Decimal(prompt_tokens) * prices.input_per_1m
        + Decimal(completion_tokens) * prices.output_per_1m
    ) / million


def format_usd(amount: Decimal | None) -> str:
    """`$0.000019` — six decimals, as AllToken's own tooling shows it."""
    if amount is None:
        return "n/a"
    return f"${amount.quantize(Decimal('0.000001')):f}"
