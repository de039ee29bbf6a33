"""A piped console fills private forms from its input (issue 10, item 8).

Without a terminal, the lines right after a form's command are its fields, one per line in the
form's order; each label is the prompt, on stderr; no value (a key, a password) reaches stdout.
The in-process tests drive the real adapter loop; the last one runs `tokenbot console --sim` as
a subprocess and signs in to the OpenClaw Token simulator with email and password.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.console.run import ConsoleAdapter
from bot.backends.alltoken.family import alltoken_family
from bot.core.app import TokenBot
from bot.core.messages import FormField, FormRequest
from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.state import DEMO_EMAIL, DEMO_PASSWORD
from bot.store import Owner
from tests.conftest import make_settings

EVE = Owner(platform="console", workspace="console", user="eve")


@pytest.fixture
async def bot(sim: AllTokenSim, tmp_path: Path) -> AsyncIterator[TokenBot]:
    b = await TokenBot.create(make_settings(tmp_path / "data", sim), [alltoken_family()])
    try:
        yield b
    finally:
        await b.aclose()


async def run_piped(bot: TokenBot, tmp_path: Path, lines: list[str]) -> tuple[str, str]:
    """The adapter on piped input (not a terminal): (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    adapter = ConsoleAdapter(
        bot,
        user="eve",
        out_dir=tmp_path / "out",
        stdin=io.StringIO("\n".join(lines) + "\n"),
        stdout=out,
        stderr=err,
        interactive=False,
    )
    assert await adapter.run() == 0
    return out.getvalue(), err.getvalue()


async def test_a_piped_key_form_stores_the_key_and_never_prints_it(
    bot: TokenBot, sim: AllTokenSim, tmp_path: Path
) -> None:
    key = sim.issue_key(5.0)
    out, err = await run_piped(
        bot, tmp_path, ["/alltoken-key", key, "/alltoken-key status", "/alltoken-chat hi"]
    )
    assert await bot.store.get_credential(EVE, "alltoken") == key
    assert key not in out and key not in err
    assert "Your AllToken API key" in err  # the label is the prompt, on stderr
    assert "Reading 1 field(s) from input: Your AllToken API key" in out
    assert "No terminal" not in out and "key_in_text" not in out
    assert "is stored" in out  # the status line after the form
    assert "tokens" in out  # and the chat after it ran with the stored key


async def test_input_that_ends_mid_form_says_what_to_send(bot: TokenBot, tmp_path: Path) -> None:
    out, _ = await run_piped(bot, tmp_path, ["/alltoken-key"])
    assert "form_not_sent" in out and "input ended before “Your AllToken API key”" in out
    assert "one line per field right after it, in this order: Your AllToken API key" in out
    assert await bot.store.get_credential(EVE, "alltoken") is None
    assert "something went wrong" not in out.lower()


async def test_a_form_asked_while_the_loop_reads_a_line_is_not_fed_that_line(
    bot: TokenBot, tmp_path: Path
) -> None:
    """A form from a background job would race the loop for the next line: it says what to do."""
    out, err = io.StringIO(), io.StringIO()
    adapter = ConsoleAdapter(
        bot,
        user="eve",
        out_dir=tmp_path / "out",
        stdin=io.StringIO(""),
        stdout=out,
        stderr=err,
        interactive=False,
    )
    form = FormRequest(
        form_id="key.alltoken",
        title="AllToken key",
        fields=[FormField(name="key", label="Your AllToken API key")],
    )
    adapter._awaiting_line = True  # the loop is waiting in readline
    await adapter.conversation_for(adapter.destination()).request_form(form)
    printed = out.getvalue()
    assert "cannot be read now" in printed and "in this order: Your AllToken API key" in printed
    assert err.getvalue() == ""  # nothing was prompted, nothing read


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TOKENBOT_", "ALLTOKEN_", "OPENCLAW_", "OPENMARLIN_"))
    }
    env.update(TOKENBOT_SIM_TOKENS_PER_SECOND="0", PYTHONUNBUFFERED="1")
    return env


def test_a_piped_console_signs_in_with_email_and_password(tmp_path: Path) -> None:
    script = "\n".join(
        [
            "/openclaw-token auth login --email",
            DEMO_EMAIL,
            DEMO_PASSWORD,
            "/openclaw-token auth whoami",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "console", "--sim", "--out", str(tmp_path / "out")],
        input=script + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_env(),
    )
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, err
    assert f"Signed in to OpenClaw Token as {DEMO_EMAIL}" in out
    assert DEMO_PASSWORD not in out and DEMO_PASSWORD not in err
    # The prompts, in the documented order, on stderr.
    assert err.index("Email:") < err.index("Password (not echoed):")
    assert "Reading 2 field(s) from input: Email, Password" in out
    assert "/alltoken-key set" not in out
    assert "Traceback" not in out + err
