"""Conversation over a terminal: text as it arrives, images saved to a folder, links printed."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

from adapters.console.demo_links import DemoMedia
from adapters.console.render import render
from bot.core.messages import (
    Destination,
    FormRequest,
    Image,
    Limits,
    MessageRef,
    Notice,
    Part,
)
from bot.core.outbound_text import neutralise_controls

FormReader = Callable[[FormRequest, Destination], Awaitable[None]]


class ConsolePrinter:
    """Serialises writes so concurrent jobs and a streaming answer don't interleave mid-line."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.streaming = False
        self._pending: list[str] = []

    def write_block(self, text: str) -> None:
        """Print a whole block on its own lines (deferred while an answer is streaming)."""
        if self.streaming:
            self._pending.append(text)
            return
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()

    def write_delta(self, text: str) -> None:
        """Print streamed text as it arrives."""
        self.out.write(text)
        self.out.flush()

    def end_stream(self) -> None:
        """Close the streamed line and print what was held back meanwhile."""
        self.streaming = False
        self.out.write("\n")
        pending, self._pending = self._pending, []
        for block in pending:
            self.write_block(block)


class ConsoleTextStream:
    """Writes each delta immediately: a terminal has no edit rate limit."""

    def __init__(self, printer: ConsolePrinter) -> None:
        self.printer = printer
        self.started = False

    async def append(self, text: str) -> None:
        """Print the delta, without any control characters it carries.

        Deltas are neutralised one by one: every ESC, BEL and C1 character is dropped on its
        own, so a sequence split across deltas can't reassemble on the terminal.
        """
        if not self.started:
            self.started = True
            self.printer.streaming = True
        self.printer.write_delta(neutralise_controls(text))

    async def finish(self, trailer: Sequence[Part] = ()) -> None:
        """End the line, then print the usage and cost line."""
        if self.started:
            self.printer.end_stream()
        else:
            self.printer.write_block("(no text returned)")
        if trailer:
            self.printer.write_block(render(trailer))


class ConsoleConversation:
    """The terminal adapter's Conversation."""

    _ids = itertools.count(1)

    def __init__(
        self,
        destination: Destination,
        printer: ConsolePrinter,
        out_dir: Path,
        form_reader: FormReader | None = None,
        demo: DemoMedia | None = None,
    ) -> None:
        self.destination = destination
        self.printer = printer
        self.out_dir = out_dir
        self.form_reader = form_reader
        self.demo = demo
        self.limits = Limits(
            max_message_chars=1_000_000, edit_interval_s=0.0, max_upload_bytes=1 << 40
        )

    def _ref(self) -> MessageRef:
        return MessageRef(
            platform="console", channel=self.destination.channel, id=str(next(self._ids))
        )

    async def say(self, parts: Sequence[Part]) -> MessageRef:
        """Print the parts."""
        await self._print(parts)
        return self._ref()

    async def edit(self, ref: MessageRef, parts: Sequence[Part]) -> None:
        """A terminal can't edit: print the new version (jobs edit only on real changes)."""
        await self._print(parts)

    async def _print(self, parts: Sequence[Part]) -> None:
        copies = await self.demo.keep_copies(parts) if self.demo is not None else []
        self.printer.write_block("\n".join([render(parts), *copies]))

    def stream(self) -> ConsoleTextStream:
        """Stream straight to the terminal."""
        return ConsoleTextStream(self.printer)

    async def upload(self, image: Image) -> MessageRef:
        """Copy the saved image into the output folder and print its path."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        suffix = {"image/jpeg": ".jpg", "image/webp": ".webp"}.get(image.mime, ".png")
        target = self.out_dir / f"alltoken-image-{image.path.stem[:8]}{suffix}"
        await asyncio.to_thread(shutil.copyfile, image.path, target)
        size = target.stat().st_size
        alt = f" — {neutralise_controls(image.alt)}" if image.alt else ""
        if self.demo is not None:
            alt += " (simulated)"  # drawn by the demo's simulator, not by a model
        self.printer.write_block(
            f"🖼 saved {neutralise_controls(str(target))} ({size:,} bytes){alt}"
        )
        return self._ref()

    async def whisper(self, parts: Sequence[Part]) -> None:
        """The terminal is private already."""
        self.printer.write_block(render(parts))

    async def direct(self, parts: Sequence[Part]) -> None:
        """Same terminal."""
        self.printer.write_block(render(parts))

    async def request_form(self, request: FormRequest) -> None:
        """Ask field by field, without echo for secrets, when there is a terminal."""
        if self.form_reader is None:
            await self.say(
                [
                    Notice(
                        level="info",
                        text="No terminal to ask privately (input is piped); "
                        "use the command's text form here instead, e.g. `/alltoken-key set <key>`.",
                    )
                ]
            )
            return
        await self.form_reader(request, self.destination)

    async def delete_inbound(self) -> bool:
        """Nothing to delete in a terminal."""
        return False
