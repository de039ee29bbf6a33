"""One line must never end the console: every entry point turns an unexpected exception into
"something went wrong (ref …)" on stdout, logs the same ref, and the loop reads on.

The core never raises to the adapter by contract and no local server can make it: each test
injects the exception with monkeypatch (the reason is on each patch), then drives the real
run loop with piped input and checks what it printed, that the next line still works, and that
it ends with exit code 0 at end of input.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.console.run import ConsoleAdapter
from bot.backends.alltoken.family import alltoken_family
from bot.core.app import Outcome, TokenBot
from bot.core.messages import Conversation, Inbound
from bot.sim.alltoken.server import AllTokenSim
from bot.store import Owner
from tests.conftest import make_settings

REF = re.compile(r"something went wrong \(ref ([0-9a-f]+)\)", re.IGNORECASE)
HELP = "/alltoken-help"


class Injected(RuntimeError):
    """The unexpected exception the tests inject."""


@pytest.fixture
async def bot(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[TokenBot]:
    b = await TokenBot.create(make_settings(tmp_path / "data", sim), [alltoken_family()])
    owner = Owner(platform="console", workspace="console", user="eve")
    await b.store.put_credential(owner, "alltoken", sim.issue_key(10.0))
    try:
        yield b
    finally:
        await b.aclose()


async def run_console(bot: TokenBot, tmp_path: Path, lines: list[str], **options: Any) -> str:
    out = io.StringIO()
    adapter = ConsoleAdapter(
        bot,
        user="eve",
        out_dir=tmp_path / "out",
        stdin=io.StringIO("\n".join(lines) + "\n"),
        stdout=out,
        **options,
    )
    assert await adapter.run() == 0
    return out.getvalue()


def check_reported(printed: str, caplog: pytest.LogCaptureFixture) -> str:
    found = REF.search(printed)
    assert found, printed
    ref = found.group(1)
    # Logged by the adapter's own guard (the core's guards log under bot.*).
    assert any(
        ref in r.getMessage() and r.levelno >= logging.ERROR and r.name == "adapters.console.run"
        for r in caplog.records
    )
    assert "Traceback" not in printed and "injected" not in printed
    return ref


def answered_help(printed: str, after: str) -> bool:
    return "/alltoken-chat" in printed.split(after, 1)[1]


async def test_a_line_that_raises_is_reported_and_the_next_line_answered(
    bot: TokenBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handle = TokenBot.handle

    async def handle_or_raise(
        self: TokenBot, inbound: Inbound, conversation: Conversation
    ) -> Outcome:
        if inbound.text == "boom":
            raise Injected("injected for the test")
        return await handle(self, inbound, conversation)

    # TokenBot.handle never raises by contract: only a patch can make it.
    monkeypatch.setattr(TokenBot, "handle", handle_or_raise)
    printed = await run_console(bot, tmp_path, ["boom", HELP])
    ref = check_reported(printed, caplog)
    assert answered_help(printed, ref)


async def test_a_crash_mid_stream_does_not_hold_back_later_output(
    bot: TokenBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    handle = TokenBot.handle

    async def stream_then_raise(
        self: TokenBot, inbound: Inbound, conversation: Conversation
    ) -> Outcome:
        if inbound.text == "boom":
            await conversation.stream().append("half an answ")
            raise Injected("injected for the test")
        return await handle(self, inbound, conversation)

    # A handler dying halfway through a streamed answer can only be staged with a patch.
    monkeypatch.setattr(TokenBot, "handle", stream_then_raise)
    printed = await run_console(bot, tmp_path, ["boom", HELP])
    ref = check_reported(printed, caplog)
    assert "half an answ\n" in printed and answered_help(printed, ref)


async def test_an_action_that_raises(
    bot: TokenBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def raise_(*_args: Any) -> None:
        raise Injected("injected for the test")

    # TokenBot.handle_action never raises by contract: only a patch can make it.
    monkeypatch.setattr(TokenBot, "handle_action", raise_)
    printed = await run_console(bot, tmp_path, ["/action alltoken.video.cancel job1", HELP])
    ref = check_reported(printed, caplog)
    assert answered_help(printed, ref)


async def test_a_form_that_raises(
    bot: TokenBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-at-" + "Wv4" * 10
    asked: list[tuple[str, bool]] = []

    def read_field(prompt: str, hidden: bool) -> str:
        asked.append((prompt, hidden))
        return secret

    async def raise_(*_args: Any) -> bool:
        raise Injected("injected for the test")

    # TokenBot.submit_form never raises by contract: only a patch can make it.
    monkeypatch.setattr(TokenBot, "submit_form", raise_)
    printed = await run_console(
        bot, tmp_path, ["/alltoken-key", HELP], interactive=True, read_field=read_field
    )
    ref = check_reported(printed, caplog)
    assert asked and answered_help(printed, ref)
    assert not any(secret in r.getMessage() for r in caplog.records)
