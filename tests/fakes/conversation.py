"""A Conversation that records everything, like errbot's test backend: for core tests."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.console.render import render
from bot.core.jobs import JobRunner
from bot.core.messages import Destination, FormRequest, Image, Limits, MessageRef, Part
from tests import leaks

# Events only the requesting user sees.
_PRIVATE = frozenset({"whisper", "direct", "form"})


@dataclass
class Event:
    """One thing the bot did in the conversation."""

    kind: str  # say | edit | stream | upload | whisper | direct | secret
    parts: list[Part] = field(default_factory=list)
    text: str = ""
    ref: str | None = None
    image_bytes: bytes | None = None


class RecordingStream:
    """Collects streamed text; `finish` records one `stream` event."""

    def __init__(self, conv: RecordingConversation) -> None:
        self.conv = conv
        self.chunks: list[str] = []

    async def append(self, text: str) -> None:
        self.chunks.append(text)

    async def finish(self, trailer: Sequence[Part] = ()) -> None:
        self.conv.record(Event("stream", list(trailer), "".join(self.chunks)))


class RecordingConversation:
    """Records every call; `fail_uploads` makes the next N uploads raise (delivery retry tests)."""

    _ids = itertools.count(1)

    def __init__(self, destination: Destination, fail_uploads: int = 0) -> None:
        self.destination = destination
        self.limits = Limits()
        self.events: list[Event] = []
        self.fail_uploads = fail_uploads
        self.forms: list[FormRequest] = []
        self.deletable = False
        self.deleted = 0
        self.changed = asyncio.Event()
        # When set: an upload is received (recorded) at once but answered only once this
        # event is set, as a platform slow to answer a file it already has.
        self.upload_answer: asyncio.Event | None = None
        # The same for messages (say / edit) whose text `hold_if` picks.
        self.message_answer: asyncio.Event | None = None
        self.hold_if: Callable[[str], bool] = lambda _text: True

    def record(self, event: Event) -> None:
        self.events.append(event)
        parts = json.dumps([p.model_dump(mode="json") for p in event.parts])
        leaks.reply("conversation", f"{event.text}\n{parts}", private=event.kind in _PRIVATE)
        self.changed.set()

    def _ref(self) -> MessageRef:
        return MessageRef(
            platform=self.destination.platform,
            channel=self.destination.channel,
            id=str(next(self._ids)),
        )

    async def say(self, parts: Sequence[Part]) -> MessageRef:
        ref = self._ref()
        await self._answer(Event("say", list(parts), render(parts), ref.id))
        return ref

    async def edit(self, ref: MessageRef, parts: Sequence[Part]) -> None:
        await self._answer(Event("edit", list(parts), render(parts), ref.id))

    async def _answer(self, event: Event) -> None:
        self.record(event)
        if self.message_answer is not None and self.hold_if(event.text):
            await self.message_answer.wait()

    def stream(self) -> RecordingStream:
        return RecordingStream(self)

    async def upload(self, image: Image) -> MessageRef:
        if self.fail_uploads > 0:
            self.fail_uploads -= 1
            raise ConnectionError("upload refused (test)")
        data = Path(image.path).read_bytes()
        ref = self._ref()
        self.record(Event("upload", [image], image.alt, ref.id, data))
        if self.upload_answer is not None:
            await self.upload_answer.wait()
        return ref

    async def whisper(self, parts: Sequence[Part]) -> None:
        self.record(Event("whisper", list(parts), render(parts)))

    async def direct(self, parts: Sequence[Part]) -> None:
        self.record(Event("direct", list(parts), render(parts)))

    async def request_form(self, request: FormRequest) -> None:
        self.forms.append(request)
        self.record(Event("form", [], request.title))

    async def delete_inbound(self) -> bool:
        if self.deletable:
            self.deleted += 1
        return self.deletable

    def hold_messages(self, marker: str) -> None:
        """Answer messages holding `marker` only once `release_messages` is called."""
        self.message_answer = asyncio.Event()
        self.hold_if = lambda text: marker in text

    def release_messages(self) -> None:
        """Answer the held messages (and those to come)."""
        if self.message_answer is not None:
            self.message_answer.set()

    # --- helpers for assertions --------------------------------------------------------

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]

    def text(self) -> str:
        return "\n".join(f"[{e.kind}] {e.text}" for e in self.events)

    async def wait_for(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> None:
        """Wait until `predicate(self)` holds."""

        async def loop() -> None:
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), timeout)


async def stop_jobs_while_posting(
    conv: RecordingConversation, marker: str, jobs: JobRunner
) -> None:
    """Stop every job task while a message holding `marker` is on the wire (the platform has
    it, has not answered), then answer it and wait for the tasks to end."""
    await conv.wait_for(lambda c: marker in c.text())
    jobs.stop_all_local()
    await asyncio.sleep(0.05)  # the stop has reached the job, still waiting for the platform
    conv.release_messages()
    await asyncio.gather(*jobs._tasks.values(), return_exceptions=True)
