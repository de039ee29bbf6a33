"""Server-sent-event framing for the AllToken simulator's chat streams, and its cost line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

_THOUSAND = Decimal(1_000)


def _money(value: Decimal) -> str:
    # AllToken prints prices and costs as strings with exactly 10 decimals.
    return f"{value:.10f}"


@dataclass(frozen=True)
class ChatPricing:
    """One chat request's prices (USD per 1M tokens) and prompt size; computes the cost line."""

    in_per_m: Decimal
    out_per_m: Decimal
    prompt_tokens: int

    def cost(self, completion_tokens: int) -> Decimal:
        """USD for this request with `completion_tokens` of output."""
        # cost = pt/1000 * in_per_1k + ct/1000 * out_per_1k, with per-1K = per-1M / 1000.
        prompt_part = Decimal(self.prompt_tokens) / _THOUSAND * (self.in_per_m / _THOUSAND)
        output_part = Decimal(completion_tokens) / _THOUSAND * (self.out_per_m / _THOUSAND)
        return prompt_part + output_part

    def usage(self, completion_tokens: int) -> dict[str, int]:
        """The OpenAI `usage` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def cost_line(self, completion_tokens: int) -> str:
        """The JSON after `: ` that follows `data: [DONE]`."""
        return json.dumps(
            {
                "cost": _money(self.cost(completion_tokens)),
                "input_price": _money(self.in_per_m / _THOUSAND),
                "output_price": _money(self.out_per_m / _THOUSAND),
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": completion_tokens,
            },
            separators=(",", ":"),
        )


class ChunkWriter:
    """Builds `data: {chunk}` SSE frames; the fixed parts are serialized once per stream."""

    def __init__(
        self, chunk_id: str, model: str, created: int, request_id: str, include_usage: bool = False
    ) -> None:
        # `include_usage` changes nothing in the chunks themselves (the caller writes the
        # usage chunk); it stays so the OpenClaw Token proxy's stream can say it forces it.
        del include_usage
        head: dict[str, Any] = {
            "id": chunk_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
        }
        self._head = json.dumps(head, separators=(",", ":"))[:-1]
        # usage is null (present, not absent) on every chunk: all of them without
        # include_usage, all but the extra last one with it.
        tail: dict[str, Any] = {"usage": None, "x-gateway-request-id": request_id}
        self._tail = "," + json.dumps(tail, separators=(",", ":"))[1:]
        self._request_id = request_id

    def _frame(self, choices: str, tail: str | None = None) -> bytes:
        return f'data: {self._head},"choices":{choices}{tail or self._tail}\n\n'.encode()

    def role(self) -> bytes:
        """The first chunk: the assistant role with empty content."""
        return self._frame(
            '[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]'
        )

    def content(self, text: str) -> bytes:
        """One content delta."""
        delta = json.dumps(text)
        return self._frame(f'[{{"index":0,"delta":{{"content":{delta}}},"finish_reason":null}}]')

    def finish(self, reason: str) -> bytes:
        """The chunk carrying finish_reason."""
        return self._frame(f'[{{"index":0,"delta":{{}},"finish_reason":{json.dumps(reason)}}}]')

    def usage(self, usage: dict[str, int]) -> bytes:
        """The extra last chunk (choices: []) that carries usage when include_usage is set."""
        tail = (
            ","
            + json.dumps(
                {"usage": usage, "x-gateway-request-id": self._request_id}, separators=(",", ":")
            )[1:]
        )
        return self._frame("[]", tail)
