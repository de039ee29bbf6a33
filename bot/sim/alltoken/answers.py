"""Deterministic chat answers for the AllToken simulator, plus its word-as-token counting.

Prompt markers steer the answer so tests can exercise the bot: `[[tokens=N]]` asks for about N
tokens (paragraphs and, above 60, a fenced python block), `[[echo-context]]` reports the
conversation the simulator received, and `[[fail]]` (images/videos) makes a task fail.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

TOKENS_MARKER = re.compile(r"\[\[tokens=(\d+)\]\]")
ECHO_MARKER = "[[echo-context]]"
FAIL_MARKER = "[[fail]]"
# Keeps a typo like [[tokens=99999999]] from tying up the event loop.
MAX_MARKER_TOKENS = 50_000

SearchMode = Literal["off", "honoured", "ignored"]

_WORDS = (
    "gateway latency token stream model prompt answer budget router thread channel "
    "cache request response vector context window cost balance image video search "
    "quality signal pattern module service adapter summary detail example result "
    "careful simple direct useful steady clear short long fast local remote"
).split()
_CODE_BLOCK = (
    "```python\n"
    "def fibonacci(n: int) -> list[int]:\n"
    '    """Return the first n Fibonacci numbers."""\n'
    "    seq = [0, 1]\n"
    "    while len(seq) < n:\n"
    "        seq.append(seq[-1] + seq[-2])\n"
    "    return seq[:n]\n"
    "```"
)
_TOKEN_PIECES = re.compile(r"\s*\S+\s*")


def count_tokens(text: str) -> int:
    """Tokens as the simulator counts them: whitespace-separated words."""
    return len(text.split())


def split_tokens(text: str) -> list[str]:
    """Split text into stream pieces (a word plus its trailing whitespace); joins back exactly."""
    return _TOKEN_PIECES.findall(text)


def message_text(content: Any) -> str:
    """The text of an OpenAI message `content` (a string or a list of content parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") or "" for p in content if isinstance(p, dict)]
        return " ".join(p for p in parts if p)
    return ""


def prompt_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Prompt token count of a chat request (at least 1)."""
    return max(1, sum(count_tokens(message_text(m.get("content"))) for m in messages))


def _excerpt(text: str, limit: int = 80) -> str:
    clean = " ".join(TOKENS_MARKER.sub("", text).replace(ECHO_MARKER, "").split())
    return clean if len(clean) <= limit else clean[: limit - 1].rstrip() + "…"


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _paragraph(rng: random.Random, words: int, model: str, first: bool) -> str:
    picked = [rng.choice(_WORDS) for _ in range(words)]
    # Every paragraph carries one bold pair and one inline code span for the renderers.
    if words >= 3:
        picked[1] = f"**{picked[1]}"
        picked[2] = f"{picked[2]}**"
    if words >= 5:
        picked[-2] = f"`{picked[-2]}`"
    if first and words >= 1:
        picked[0] = f"({model})"
    text = " ".join(picked)
    return text[0].upper() + text[1:] + "."


def long_body(target: int, seed_text: str, model: str) -> str:
    """About `target` tokens of markdown: paragraphs, bold, inline code and, above 60, code."""
    target = max(1, min(target, MAX_MARKER_TOKENS))
    rng = random.Random(_seed(seed_text))
    code_tokens = count_tokens(_CODE_BLOCK) if target > 60 else 0
    remaining = target - code_tokens
    blocks: list[str] = []
    while remaining > 0:
        size = min(remaining, rng.randint(30, 55))
        if 0 < remaining - size < 8:
            size = remaining  # avoid a runt paragraph at the end
        blocks.append(_paragraph(rng, size, model, first=not blocks))
        remaining -= size
        if code_tokens and len(blocks) == 1:
            blocks.append(_CODE_BLOCK)
    if code_tokens and _CODE_BLOCK not in blocks:
        blocks.append(_CODE_BLOCK)
    return "\n\n".join(blocks)


def _short_body(prompt: str, model: str) -> str:
    tag = hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:6]
    return (
        f"**Simulated answer** from `{model}`. You asked: “{_excerpt(prompt)}”. "
        f"This reply is deterministic (tag `{tag}`), so tests can rely on it. "
        "**Key point:** nothing here came from a real model."
    )


def _echo_body(messages: Sequence[dict[str, Any]]) -> str:
    users = [m for m in messages if m.get("role") == "user"]
    first = message_text(users[0].get("content")) if users else ""
    return (
        f"I received {len(messages)} messages in this conversation "
        f"({len(users)} from the user). The first user message was: “{_excerpt(first, 200)}”. "
        "**Context check** done with `echo-context`."
    )


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", _excerpt(text).lower())[:6]
    return "-".join(words) or "query"


def compose_answer(
    messages: Sequence[dict[str, Any]],
    model: str,
    search: SearchMode = "off",
    today: datetime | None = None,
) -> str:
    """The simulator's answer to a chat request, derived only from its messages and model."""
    users = [m for m in messages if m.get("role") == "user"]
    last = message_text((users or list(messages) or [{}])[-1].get("content"))
    parts: list[str] = []
    if search == "honoured":
        day = (today or datetime.now(UTC)).strftime("%Y-%m-%d")
        parts.append(f"Searched the web ({day}): 2 sources about “{_excerpt(last)}”.")
    elif search == "ignored":
        parts.append("I have no live web access, so this answer is based on my training data.")
    if ECHO_MARKER in last:
        parts.append(_echo_body(messages))
    marker = TOKENS_MARKER.search(last)
    if marker:
        parts.append(long_body(int(marker.group(1)), last, model))
    elif ECHO_MARKER not in last:
        parts.append(_short_body(last, model))
    if search == "honoured":
        slug = _slug(last)
        parts.append(
            f"Sources:\n1. https://example.com/news/{slug}\n2. https://example.com/reference/{slug}"
        )
    return "\n\n".join(parts)
