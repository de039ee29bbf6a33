"""Conversation over a terminal: text as it arrives, images saved to a folder, links printed."""

from __future__ import annotations

import asyncio
import itertools
import shutil
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TextIO

from adapters.console.demo_links import DemoMedia
from adapters.console.progress import ProgressBoard
from adapters.console.render import render
from adapters.console.terminal_render import MarkdownStream, render_terminal
from bot.core.messages import (
    Destination,
    File,
    FormRequest,
    Image,
    Limits,
    MessageRef,
    Notice,
    Part,
    split_files,
)
from bot.core.outbound_text import neutralise_controls

FormReader = Callable[[FormRequest, Destination], Awaitable[None]]
_RUN = uuid.uuid4().hex[:6]


class ConsolePrinter:
    """Serialises writes so concurrent jobs and a streaming answer don't interleave mid-line.

    With `terminal` set (stdout is a terminal), Markdown is rendered and a streamed answer is
    redrawn as it grows; without it (a pipe) every part is printed as plain text.
    """

    def __init__(
        self, out: TextIO, *, terminal: bool = False, progress: ProgressBoard | None = None
    ) -> None:
        self.out = out
        self.terminal = terminal
        # The bars of running jobs (a terminal only): their edits update a bar, not a line.
        self.progress = progress
        self.streaming = False
        self._pending: list[str] = []
        self._markdown: MarkdownStream | None = None

    def render(self, parts: Sequence[Part]) -> str:
        """Parts as this output shows them."""
        return render_terminal(parts) if self.terminal else render(parts)

    def write_block(self, text: str) -> None:
        """Print a whole block on its own lines (deferred while an answer is streaming)."""
        if self.streaming:
            self._pending.append(text)
            return
        self.out.write(text.rstrip("\n") + "\n")
        self.out.flush()

    def begin_stream(self) -> None:
        """An answer starts streaming: later blocks wait until it ends."""
        self.streaming = True
        if self.terminal:
            self._markdown = MarkdownStream(self.out)

    def write_delta(self, text: str) -> None:
        """Print streamed text as it arrives."""
        if self._markdown is not None:
            self._markdown.append(text)
            return
        self.out.write(text)
        self.out.flush()

    def end_stream(self) -> None:
        """Close the streamed line and print what was held back meanwhile."""
        self.streaming = False
        if self._markdown is not None:
            self._markdown.finish()
            self._markdown = None
        else:
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
            self.printer.begin_stream()
        self.printer.write_delta(neutralise_controls(text))

    async def finish(self, trailer: Sequence[Part] = ()) -> None:
        """End the line, then print the usage and cost line."""
        if self.started:
            self.printer.end_stream()
        else:
            self.printer.write_block("(no text returned)")
        if trailer:
            self.printer.write_block(self.printer.render(trailer))


def _copy_fresh(source: Path, folder: Path, name: str) -> tuple[Path, int]:
    """Copy `source` into `folder` as `name`, or `name-2`, … when taken (never over a file)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    for n in itertools.count(2):
        if not target.exists():
            break
        target = folder / f"{Path(name).stem}-{n}{Path(name).suffix}"
    shutil.copyfile(source, target)
    return target, target.stat().st_size


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
        # The run prefix keeps this process's ids apart from those of jobs resumed from
        # an earlier run, which edit the messages they posted then.
        return MessageRef(
            platform="console",
            channel=self.destination.channel,
            id=f"{_RUN}-{next(self._ids)}",
        )

    async def say(self, parts: Sequence[Part]) -> MessageRef:
        """Print the parts; their files are saved in the output folder."""
        ref = self._ref()
        parts, files = split_files(parts)
        if parts or not files:
            await self._print(ref, parts)
        for file in files:
            await self.save_file(file)
        return ref

    async def save_file(self, file: File) -> None:
        """Copy a `File` part into the output folder and print where it went."""
        name = Path(neutralise_controls(file.name).replace("\\", "_")).name or file.path.name
        target, size = await asyncio.to_thread(_copy_fresh, file.path, self.out_dir, name)
        self.printer.write_block(f"📎 saved {neutralise_controls(str(target))} ({size:,} bytes)")

    async def edit(self, ref: MessageRef, parts: Sequence[Part]) -> None:
        """A terminal can't edit: print the new version (jobs edit only on real changes).

        On a terminal, a progress message's later versions move its bar instead.
        """
        await self._print(ref, parts)

    async def _print(self, ref: MessageRef, parts: Sequence[Part]) -> None:
        progress = self.printer.progress
        if progress is not None and progress.update(ref.id, parts):
            return
        copies = await self.demo.keep_copies(parts) if self.demo is not None else []
        self.printer.write_block("\n".join([self.printer.render(parts), *copies]))

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
        parts, files = split_files(parts)
        if parts or not files:
            self.printer.write_block(self.printer.render(parts))
        for file in files:
            await self.save_file(file)

    async def direct(self, parts: Sequence[Part]) -> None:
        """Same terminal."""
        self.printer.write_block(self.printer.render(parts))

    async def request_form(self, request: FormRequest) -> None:
        """Ask field by field: on a terminal without echo for secrets, else from piped lines."""
        if self.form_reader is None:
            # Only a conversation made outside the adapter (no input to read) lands here.
            labels = ", ".join(f.label for f in request.fields)
            await self.say(
                [
                    Notice(
                        level="info",
                        text=f"“{request.title}” needs a private form, and nothing here can "
                        "read one. Run `tokenbot console` and type the command, or pipe it "
                        f"followed by one line per field, in this order: {labels}.",
                    )
                ]
            )
            return
        await self.form_reader(request, self.destination)

    async def delete_inbound(self) -> bool:
        """Nothing to delete in a terminal."""
        return False
