"""Pure rendering for the AllToken commands: usage lines, model lists, cost tables."""

from __future__ import annotations

from decimal import Decimal

from bot.messages import Fields, Notice, Text
from bot.pricing import Prices, format_usd
from bot.services.alltoken import ModelInfo, Usage


def usage_line(
    model: str, usage: Usage | None, cost: Decimal | None, *, cost_source: str = ""
) -> Notice:
    """`gpt-5.4-mini · 19 prompt + 12 completion = 31 tokens · $0.000019`."""
    bits = [f"`{model}`"]
    if usage is not None:
        bits.append(
            f"{usage.prompt_tokens} prompt + {usage.completion_tokens} completion = "
            f"{usage.total_tokens or usage.prompt_tokens + usage.completion_tokens} tokens"
        )
    else:
        bits.append("usage not reported")
    if cost is not None:
        bits.append(format_usd(cost) + (f" ({cost_source})" if cost_source else ""))
    return Notice(level="info", text=" · ".join(bits))


def models_reply(type_: str, models: list[ModelInfo], filter_: str) -> Text:
    """The model ids in a code block, with a count line (as the seed's recipe prints them)."""
    ids = [m.id for m in models]
    if filter_:
        ids = [i for i in ids if filter_.lower() in i.lower()]
    head = f"**{type_}: {len(ids)} model(s)**" + (f" matching `{filter_}`" if filter_ else "")
    if not ids:
        return Text(markdown=head + "\nNo model matches; try without `--filter`.")
    return Text(markdown=head + "\n```\n" + "\n".join(ids) + "\n```")


def cost_table(
    model: str,
    prompt_tokens: int,
    completion_tokens: int,
    cost: Decimal,
    prices: Prices | None,
    source: str,
) -> Fields:
    """The cost breakdown as label/value rows."""
    rows: list[tuple[str, str]] = [
        ("model", model),
        ("prompt tokens", f"{prompt_tokens:,}"),
        ("completion tokens", f"{completion_tokens:,}"),
    ]
    if prices is not None:
        rows.append(("input $/1M", f"${prices.input_per_1m.normalize():f}"))
        rows.append(("output $/1M", f"${prices.output_per_1m.normalize():f}"))
    rows.append(("total cost", format_usd(cost)))
    rows.append(("source", source))
    return Fields(title="AllToken cost", rows=rows)
