"""The console adapter's loop: read lines, hand them to the bot, wait for jobs at end of input."""

from __future__ import annotations

import asyncio
import getpass
import sys
from pathlib import Path
from typing import TextIO

from adapters.console.conversation import ConsoleConversation, ConsolePrinter
from bot.app import TokenBot
from bot.messages import Destination, FormRequest, Inbound, Notice

PROMPT = "› "


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
    ) -> None:
        self.bot = bot
        self.user = user
        self.out_dir = out_dir
        self.stdin = stdin or sys.stdin
        self.printer = ConsolePrinter(stdout or sys.stdout)
        self.interactive = self.stdin.isatty()
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
        return ConsoleConversation(destination, self.printer, self.out_dir, reader)

    def inbound(self, text: str) -> Inbound:
        """A terminal line as an Inbound (private, like a DM)."""
        return Inbound(
            platform="console",
            workspace="console",
            channel="console",
            user=self.user,
            text=text,
            is_direct=True,
        )

    async def _read_form(self, request: FormRequest, destination: Destination) -> None:
        self.printer.write_block(
            f"{request.title}" + (f" — {request.intro}" if request.intro else "")
        )
        values: dict[str, str] = {}
        for form_field in request.fields:
            reader = getpass.getpass if form_field.secret else input
            hidden = " (input hidden)" if form_field.secret else ""
            values[form_field.name] = await asyncio.to_thread(
                reader, f"{form_field.label}{hidden}: "
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
            if text.startswith("/action "):
                bits = text.split()
                if len(bits) == 3:
                    await self.bot.handle_action(self.inbound(text), bits[1], bits[2], conversation)
                else:
                    self.printer.write_block("usage: /action <action_id> <value>")
                continue
            handled = await self.bot.handle(self.inbound(text), conversation)
            if not handled:
                await conversation.say(
                    [Notice(level="info", text="Not a tokenbot command. Try `/alltoken-help`.")]
                )
        if self.bot.jobs.active:
            self.printer.write_block(f"… waiting for {self.bot.jobs.active} job(s) to finish")
            await self.bot.jobs.wait_idle()
        return 0
