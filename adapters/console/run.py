"""The console adapter's loop: read lines, hand them to the bot, wait for jobs at end of input.

One line must never end the session: whatever escapes handling a line, a form or an `/action`
is logged with a short ref and printed as "something went wrong (ref …)", and the loop reads on.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from adapters.console.conversation import ConsoleConversation, ConsolePrinter
from adapters.console.demo_links import DemoMedia
from adapters.console.render import render
from bot.core.app import TokenBot
from bot.core.failures import new_error_ref, unexpected_failure
from bot.core.messages import Destination, FormRequest, Inbound
from bot.core.outbound_text import neutralise_controls

log = logging.getLogger(__name__)

PROMPT = "› "
# Reads one form field: (prompt, secret) -> what was typed. Blocking; run in a thread.
FieldReader = Callable[[str, bool], str]


def _terminal_field(prompt: str, secret: bool) -> str:
    return getpass.getpass(prompt) if secret else input(prompt)


class ConsoleAdapter:
    """One terminal user talking to tokenbot."""

    def __init__(
        self,
        bot: TokenBot,
        *,
        user: str,
        out_dir: Path,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        interactive: bool | None = None,
        read_field: FieldReader = _terminal_field,
        demo: DemoMedia | None = None,
    ) -> None:
        self.bot = bot
        self.user = user
        self.out_dir = out_dir
        self.stdin = stdin or sys.stdin
        self.printer = ConsolePrinter(stdout or sys.stdout)
        self.interactive = self.stdin.isatty() if interactive is None else interactive
        self.read_field = read_field
        self.demo = demo
        bot.register_platform("console", self.conversation_for)

    def destination(self) -> Destination:
        """The one conversation of this terminal."""
        return Destination(
            platform="console",
            workspace="console",
            channel="console",
            user=self.user,
            is_direct=True,
        )

    def conversation_for(self, destination: Destination) -> ConsoleConversation:
        """Conversations for new messages and for jobs resumed after a restart."""
        reader = self._read_form if self.interactive else None
        return ConsoleConversation(destination, self.printer, self.out_dir, reader, self.demo)

    def inbound(self, text: str) -> Inbound:
        """A terminal line as an Inbound (private, like a DM)."""
        return Inbound(
            platform="console",
            workspace="console",
            channel="console",
            user=self.user,
            text=text,
            is_direct=True,
            is_public=False,
            addressed=True,
        )

    async def guarded(self, what: str, step: Awaitable[object]) -> None:
        """Await `step`; an exception is logged with a ref and reported, never raised."""
        try:
            await step
        except Exception as exc:
            self.report_crash(what, exc, secrets_inside=what.startswith("form"))

    def report_crash(self, what: str, exc: BaseException, *, secrets_inside: bool = False) -> str:
        """Log `exc` with a new ref and print "something went wrong (ref …)"; returns the ref."""
        ref = new_error_ref()
        if secrets_inside:
            # Form values may be quoted in the message (a validation error quotes its input).
            frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
            log.error("console: %s failed (ref %s): %s\n%s", what, ref, type(exc).__name__, frames)
        else:
            log.error("console: %s failed (ref %s)", what, ref, exc_info=exc)
        try:
            if self.printer.streaming:
                self.printer.end_stream()  # else the report would wait behind a dead stream
            self.printer.write_block(render([unexpected_failure(ref)]))
        except Exception:
            log.exception("console: could not print error ref %s", ref)
        return ref

    async def _read_form(self, request: FormRequest, destination: Destination) -> None:
        await self.guarded(f"form {request.form_id}", self._fill_form(request, destination))

    async def _fill_form(self, request: FormRequest, destination: Destination) -> None:
        intro = f" — {request.intro}" if request.intro else ""
        self.printer.write_block(neutralise_controls(f"{request.title}{intro}"))
        values: dict[str, str] = {}
        for form_field in request.fields:
            hidden = " (input hidden)" if form_field.secret else ""
            prompt = neutralise_controls(f"{form_field.label}{hidden}: ")
            values[form_field.name] = await asyncio.to_thread(
                self.read_field, prompt, form_field.secret
            )
        await self.bot.submit_form(
            self.inbound(request.form_id),
            request.form_id,
            values,
            self.conversation_for(destination),
        )

    async def _readline(self) -> str:
        if self.interactive:
            self.printer.out.write(PROMPT)
            self.printer.out.flush()
        return await asyncio.to_thread(self.stdin.readline)

    async def handle_line(self, text: str, conversation: ConsoleConversation) -> None:
        """One typed line: an `/action` button press or a message for the bot."""
        if text.startswith("/action "):
            bits = text.split()
            if len(bits) == 3:
                await self.bot.handle_action(self.inbound(text), bits[1], bits[2], conversation)
            else:
                self.printer.write_block("usage: /action <action_id> <value>")
            return
        # What is not a command is answered by the core ("That isn't a tokenbot command…").
        await self.bot.handle(self.inbound(text), conversation)

    async def run(self) -> int:
        """Until end of input (or /quit); then let pending jobs finish. Returns an exit code."""
        resumed = await self.bot.start()
        if resumed:
            self.printer.write_block(f"… resuming {resumed} unfinished job(s) from the last run")
        conversation = self.conversation_for(self.destination())
        while True:
            line = await self._readline()
            if line == "":
                break
            text = line.strip()
            if not text:
                continue
            if text.lower() in ("/quit", "/exit", "quit", "exit"):
                break
            what = "an /action" if text.startswith("/action ") else "a line"
            await self.guarded(what, self.handle_line(text, conversation))
            if self.printer.streaming:
                # A stream the handler never finished would hold back every later block.
                self.printer.end_stream()
        if self.bot.jobs.active:
            self.printer.write_block(f"… waiting for {self.bot.jobs.active} job(s) to finish")
            await self.bot.jobs.wait_idle()
        return 0
