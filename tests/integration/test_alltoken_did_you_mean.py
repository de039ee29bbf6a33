"""A mistyped model id gets the closest known id in its hint (issue 17): from the cached model
list when there is one, else from the built-in catalog; nothing close, no guess."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.console.run import ConsoleAdapter
from bot.backends.alltoken.family import alltoken_family
from bot.core.app import TokenBot
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.conftest import make_settings


@pytest.fixture
async def bot(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[TokenBot]:
    b = await TokenBot.create(make_settings(tmp_path / "data", sim), [alltoken_family()])
    owner = Owner(platform="console", workspace="console", user="eve")
    await b.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
    try:
        yield b
    finally:
        await b.aclose()


async def piped(bot: TokenBot, tmp_path: Path, *lines: str) -> str:
    out = io.StringIO()
    adapter = ConsoleAdapter(
        bot,
        user="eve",
        out_dir=tmp_path / "out",
        stdin=io.StringIO("\n".join(lines) + "\n"),
        stdout=out,
        interactive=False,
    )
    assert await adapter.run() == 0
    return out.getvalue()


async def test_a_typo_names_the_closest_model_from_the_catalog(
    bot: TokenBot, tmp_path: Path
) -> None:
    out = await piped(bot, tmp_path, "/alltoken-chat claude-sonet-4-6 hi")
    assert "✖ model_not_found" in out
    assert "→ Did you mean `claude-sonnet-4-6`? Check the model id with `/alltoken-models`" in out


async def test_a_typo_after_listing_uses_the_cached_list(bot: TokenBot, tmp_path: Path) -> None:
    # `qwen3.6-plus` is in the gateway's list but not in the built-in catalog.
    before = await piped(bot, tmp_path, "/alltoken-chat qwen3.6-pluss hi")
    assert "✖ model_not_found" in before and "`qwen3.6-plus`" not in before
    after = await piped(bot, tmp_path, "/alltoken-models", "/alltoken-chat qwen3.6-pluss hi")
    assert "Did you mean `qwen3.6-plus`?" in after


async def test_nothing_close_means_no_guess(bot: TokenBot, tmp_path: Path) -> None:
    out = await piped(bot, tmp_path, "/alltoken-chat llama-99-xl hi")
    assert "✖ model_not_found" in out and "Did you mean" not in out
