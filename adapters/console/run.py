"""The console adapter's loop: read lines, hand them to the bot, wait for jobs at end of input.

One line must never end the session: whatever escapes handling a line, a form or an `/action`
is logged with a short ref and printed as "something went wrong (ref …)", and the loop reads on.

Private forms (a key, an email and password) are asked field by field: on a terminal without
echo for secrets; with piped input from the lines right after the command, one per field in
the form's order, each field's label written to stderr as its prompt and no value echoed.

On a terminal, lines are read with a line editor (history, arrows, no length limit) and
Ctrl-C once stops the answer in progress, twice (or at an empty prompt) quits, saying which
jobs are still pending. Pipes read plain lines and print plain text.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TextIO

from prompt_toolkit.patch_stdout import patch_stdout

from adapters.console.conversation import ConsoleConversation, ConsolePrinter
from adapters.console.demo_links import DemoMedia
from adapters.console.interrupts import InterruptGate, QuitRequested, describe_pending
from adapters.console.line_input import (
    PROMPT,
    FieldCancelled,
    PipedLines,
    PromptInterrupted,
    TerminalLines,
)
from adapters.console.progress import REAL_EXPECTED_S, ProgressBoard
from adapters.console.render import render
from bot.core.app import TokenBot
from bot.core.failures import new_error_ref, unexpected_failure
from bot.core.messages import Destination, Failure, FormRequest, Inbound
from bot.core.outbound_text import neutralise_controls
from bot.core.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["PROMPT", "ConsoleAdapter", "FieldReader", "FormNotSent"]

# Reads one form field: (prompt, secret) -> what was typed. Blocking; run in a thread.
# Raises EOFError when the input ends first.
FieldReader = Callable[[str, bool], str]


def _terminal_field(prompt: str, secret: bool) -> str:
    return getpass.getpass(prompt) if secret else input(prompt)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (ValueError, OSError):
        return False


def expected_seconds(settings: Settings, simulated: bool) -> Mapping[str, float]:
    """How long an image, a video and a task usually take, for the progress bars."""
    if not simulated:
        return REAL_EXPECTED_S

    def pick(value: float | None, default: float) -> float:
        return default if value is None else value

    return {
        "image": pick(settings.sim_image_seconds, 2.0),
        "video": pick(settings.sim_video_seconds, 5.0),
        "task": pick(settings.sim_openmarlin_task_seconds, 5.0),
    }


class FormNotSent(Exception):
    """A form could not be filled (input ended, or piped input was busy); says what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.failure = Failure(code="form_not_sent", message=message, hint=hint)


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
        stderr: TextIO | None = None,
        interactive: bool | None = None,
        read_field: FieldReader | None = None,
        demo: DemoMedia | None = None,
        line_editing: bool | None = None,
        jobs_resume: bool = True,
    ) -> None:
        self.bot = bot
        self.user = user
        self.out_dir = out_dir
        self.stdin = stdin or sys.stdin
        self.stderr = stderr or sys.stderr
        out = stdout or sys.stdout
        self.interactive = _isatty(self.stdin) if interactive is None else interactive
        terminal = _isatty(out)
        if line_editing is None:
            line_editing = self.interactive and _isatty(self.stdin) and terminal
        progress = None
        if line_editing:
            progress = ProgressBoard(expected_seconds(bot.settings, demo is not None))
        self.printer = ConsolePrinter(out, terminal=terminal, progress=progress)
        # The line editor on a terminal; plain lines from a pipe.
        self.editor = TerminalLines(progress.lines if progress else None) if line_editing else None
        if progress is not None and self.editor is not None:
            progress.on_change = self.editor.refresh
        self.lines = PipedLines(self.stdin)
        self.custom_field_reader = read_field is not None
        if read_field is None:
            read_field = _terminal_field if self.interactive else self._piped_field
        self.read_field = read_field
        self.demo = demo
        # Whether unfinished jobs resume at the next start (not with the demo's throwaway data).
        self.jobs_resume = jobs_resume
        self.gate = InterruptGate()
        # True while the loop waits for a line: piped input then belongs to the loop.
        self._awaiting_line = False
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
        return ConsoleConversation(
            destination, self.printer, self.out_dir, self._read_form, self.demo
        )

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
        except FormNotSent:
            raise  # not a crash: the form reader words it
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

    def _piped_field(self, prompt: str, secret: bool) -> str:
        """One line of piped input as a form field: the prompt goes to stderr, nothing echoes."""
        self.stderr.write(prompt.rstrip() + "\n")
        self.stderr.flush()
        line = self.stdin.readline()
        if line == "":
            raise EOFError
        return line.rstrip("\r\n")

    async def _field(self, prompt: str, secret: bool) -> str:
        """One form field from the line editor, a given reader, or the pipe."""
        if self.editor is not None and not self.custom_field_reader:
            return await self.editor.read_field(prompt, secret)
        if not self.interactive and not self.custom_field_reader:
            self.stderr.write(prompt.rstrip() + "\n")
            self.stderr.flush()
            line = await self.lines.readline()
            if line == "":
                raise EOFError
            return line.rstrip("\r\n")
        return await asyncio.to_thread(self.read_field, prompt, secret)

    async def _read_form(self, request: FormRequest, destination: Destination) -> None:
        try:
            await self.guarded(f"form {request.form_id}", self._fill_form(request, destination))
        except FormNotSent as exc:
            self.printer.write_block(render([exc.failure]))

    async def _fill_form(self, request: FormRequest, destination: Destination) -> None:
        labels = ", ".join(f.label for f in request.fields)
        how = (
            f"Run the command again with one line per field right after it, in this order: "
            f"{labels}."
        )
        if self._awaiting_line and (not self.interactive or self.editor is not None):
            # Asked from a background job: the next line is the loop's, not the form's.
            if self.interactive:
                how = "Run the command again."
            raise FormNotSent(f"The form “{request.title}” cannot be read now.", how)
        intro = f" — {request.intro}" if request.intro else ""
        self.printer.write_block(neutralise_controls(f"{request.title}{intro}"))
        if not self.interactive:
            self.printer.write_block(
                neutralise_controls(f"Reading {len(request.fields)} field(s) from input: {labels}")
            )
        values: dict[str, str] = {}
        for form_field in request.fields:
            hidden = ""
            if form_field.secret:
                hidden = " (input hidden)" if self.interactive else " (not echoed)"
            prompt = neutralise_controls(f"{form_field.label}{hidden}: ")
            try:
                values[form_field.name] = await self._field(prompt, form_field.secret)
            except FieldCancelled:
                raise FormNotSent(
                    f"The form “{request.title}” was not sent: Ctrl-C cancelled it.",
                    "Run the command again to fill it in.",
                ) from None
            except EOFError:
                raise FormNotSent(
                    f"The form “{request.title}” was not sent: the input ended before "
                    f"“{form_field.label}”.",
                    how,
                ) from None
        await self.bot.submit_form(
            self.inbound(request.form_id),
            request.form_id,
            values,
            self.conversation_for(destination),
        )

    async def _readline(self) -> str:
        self._awaiting_line = True
        try:
            if self.editor is not None:
                try:
                    return await self.editor.readline()
                except PromptInterrupted:
                    self.gate.quit.set()  # Ctrl-C at an empty prompt
                    raise QuitRequested from None
            if self.interactive:
                self.printer.out.write(PROMPT)
                self.printer.out.flush()
            line = await self.lines.readline()
            if self.lines.looks_cut(line):
                self.printer.write_block(
                    f"⚠ That line reached the terminal's {len(line.rstrip()):,}-character "
                    "limit and was probably cut; the rest was not read. Pipe long text in "
                    "instead (`… | tokenbot console`)."
                )
            return line
        finally:
            self._awaiting_line = False

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

    @contextlib.contextmanager
    def _terminal(self) -> Iterator[None]:
        """With the line editor, output printed while it waits goes above the prompt."""
        if self.editor is None:
            yield
            return
        saved = self.printer.out
        # raw: our output is neutralised already; the escapes left are rich's own styles.
        with patch_stdout(raw=True):
            self.printer.out = sys.stdout
            try:
                yield
            finally:
                self.printer.out = saved

    async def run(self) -> int:
        """Until end of input, /quit or Ctrl-C; then let pending jobs finish (unless Ctrl-C)."""
        resumed = await self.bot.start()
        if resumed:
            self.printer.write_block(f"… resuming {resumed} unfinished job(s) from the last run")
        with self.gate.handling_sigint(), self._terminal():
            try:
                await self._loop()
                if self.bot.jobs.active:
                    self.printer.write_block(
                        f"… waiting for {self.bot.jobs.active} job(s) to finish"
                        + (" (Ctrl-C to quit now)" if self.interactive else "")
                    )
                    await self.gate.until_quit(self.bot.jobs.wait_idle())
            except QuitRequested:
                await self._say_goodbye()
        return 0

    async def _loop(self) -> None:
        conversation = self.conversation_for(self.destination())
        while True:
            line = await self.gate.until_quit(self._readline())
            if line == "":
                return
            text = line.strip()
            if not text:
                continue
            if text.lower() in ("/quit", "/exit", "quit", "exit"):
                return
            what = "an /action" if text.startswith("/action ") else "a line"
            finished, _ = await self.gate.cancellable(
                self.guarded(what, self.handle_line(text, conversation))
            )
            if self.printer.streaming:
                # A stream the handler never finished would hold back every later block.
                self.printer.end_stream()
            if not finished:
                self.printer.write_block("⏹ Stopped (Ctrl-C). Press Ctrl-C again to quit.")

    async def _say_goodbye(self) -> None:
        """Quitting on Ctrl-C: say which jobs are still pending and what becomes of them."""
        if self.printer.streaming:
            self.printer.end_stream()
        try:
            unfinished, _ = await self.bot.store.load_unfinished_jobs()
        except Exception:
            log.exception("console: could not list the pending jobs")
            unfinished = []
        pending = [job for job in unfinished if self.bot.jobs.is_running(job.id)]
        if not pending:
            self.printer.write_block("Bye.")
            return
        when = (
            "they resume at the next start of `tokenbot console`."
            if self.jobs_resume
            else "this demo's data is temporary, so they will not resume."
        )
        self.printer.write_block(
            "\n".join(
                [
                    f"Quitting with {len(pending)} job(s) still pending; {when}",
                    *describe_pending(pending),
                ]
            )
        )
