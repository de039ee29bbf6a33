"""Pure rendering for the AllToken commands: usage lines, model lists, cost tables."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from bot.backends.alltoken.pricing import Prices, format_usd
from bot.backends.alltoken.service import ModelInfo, Usage
from bot.core.messages import Fields, Notice, Part, Text

MEDIA_KINDS = ("image", "video")
# What describes each kind of media call, in the order shown.
_MEDIA_SETTINGS = {"image": ("size", "quality"), "video": ("duration", "ratio", "resolution")}


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
    others = [t for t in ("chat", "image", "video") if t != type_]
    # Without --type only chat models are listed: say how to see the rest.
    head += " · also " + ", ".join(f"`--type={t}`" for t in others)
    if not ids:
        return Text(markdown=head + "\nNo model matches; try without `--filter`.")
    return Text(markdown=head + "\n```\n" + "\n".join(ids) + "\n```")


def price_text(price: Decimal) -> str:
    """A price with at least cents (`$0.20`, not `$0.2` beside `$0.55`), more digits if it has them."""
    exact = price.normalize()
    exponent = exact.as_tuple().exponent
    return f"${exact:f}" if isinstance(exponent, int) and exponent < -2 else f"${price:.2f}"


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
        rows.append(("input $/1M", price_text(prices.input_per_1m)))
        rows.append(("output $/1M", price_text(prices.output_per_1m)))
    rows.append(("total cost", format_usd(cost)))
    rows.append(("source", source))
    return Fields(title="AllToken cost", rows=rows)


def reported_cost(usage: Mapping[str, Any] | None) -> Decimal | None:
    """A cost AllToken put in a media task's `usage`, if it did (the contract promises none)."""
    for name in ("cost", "cost_usd", "total_cost"):
        raw = (usage or {}).get(name)
        if raw is None or isinstance(raw, bool):
            continue
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            continue
        if value.is_finite() and value >= 0:
            return value
    return None


def media_cost(
    kind: str,
    details: Mapping[str, Any],
    *,
    status: str,
    request_id: str | None,
    usage: Mapping[str, Any] | None,
    cost: Decimal | None,
) -> list[Part]:
    """The answer to "how much did that cost" for an image or video call.

    The reported cost when there is one; otherwise an explicit "not priced" with what is known.
    """
    noun = "images" if kind == "image" else "videos"
    rows: list[tuple[str, str]] = [("model", str(details.get("model") or "unknown"))]
    for name in _MEDIA_SETTINGS.get(kind, ()):
        value = details.get(name)
        if value not in (None, ""):
            rows.append((name, f"{value} s" if name == "duration" else str(value)))
    tokens = (usage or {}).get("total_tokens")
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        rows.append(("tokens", f"{tokens:,}"))
    if status != "done":
        rows.append(("status", status))
    rows.append(("request id", request_id or "not known yet"))
    if cost is not None:
        rows.append(("total cost", format_usd(cost)))
        rows.append(("source", "reported by AllToken"))
        return [Fields(title=f"AllToken cost ({kind})", rows=rows)]
    rows.append(("total cost", "not priced"))
    what = ", ".join(label for label, _ in rows if label not in ("status", "total cost"))
    note = f"AllToken did not report a price for {noun}; here is what is known ({what})."
    if status not in ("done", "failed", "cancelled"):
        note = f"The {kind} is still {status}, and AllToken reports no price for {noun}; "
        note += f"here is what is known ({what})."
    return [Notice(level="info", text=note), Fields(title=f"AllToken cost ({kind})", rows=rows)]
