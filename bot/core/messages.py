"""Platform-neutral message types: what adapters hand the core and what the core hands back.

An adapter turns a platform event into an `Inbound`, and implements `Conversation` so a
handler can reply without knowing which platform it is talking to.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Platform = Literal["console", "slack", "discord"]


class Attachment(BaseModel):
    """A file a person attached to their message."""

    name: str
    url: str
    mime: str | None = None
    size: int | None = None


class Turn(BaseModel):
    """An earlier message of the thread, sent to the model as context."""

    model_config = ConfigDict(frozen=True)

    role: Literal["user", "assistant"]
    text: str


class Inbound(BaseModel):
    """One message or slash command, as the core sees it."""

    model_config = ConfigDict(frozen=True)

    platform: Platform
    workspace: str
    channel: str
    user: str
    text: str
    thread: str | None = None
    is_direct: bool = False
    # Slash-command name when the platform delivered one (e.g. "/alltoken-chat").
    command: str | None = None
    message_id: str | None = None
    attachments: tuple[Attachment, ...] = ()
    # Earlier messages of the thread, oldest first (adapters fill this for thread replies).
    history: tuple[Turn, ...] = ()
    # A reply inside a thread the bot is answering in: plain text continues that conversation.
    continues_thread: bool = False
    # Typed slash-command options as the platform delivered them (Discord), keyed by option name,
    # with `subcommand` naming the command path below the slash command ("keys create"). When set,
    # the family builds the command from these values instead of re-parsing `text`.
    options: dict[str, str | int | float | bool] | None = None
    subcommand: str | None = None
    # Others in the channel can read this message (adapters know; the core never tests platform
    # names). Slash-command text and DMs are not public.
    is_public: bool = True
    # Said to the bot: a mention, a DM, a slash command, the console. When such a message is not a
    # command the core says so; unaddressed channel chatter that is not a command is ignored.
    addressed: bool = False
    # The channel the person has open beside a side-panel conversation with the bot (Slack's
    # assistant thread), when the platform says; None elsewhere. An id, never its messages.
    context_channel: str | None = None

    @property
    def conversation_key(self) -> str:
        """Identifies the conversation (channel + thread) for per-conversation state."""
        return f"{self.platform}:{self.workspace}:{self.channel}:{self.thread or ''}"

    def destination(self, **extras: str) -> Destination:
        """Where replies to this message go."""
        return Destination(
            platform=self.platform,
            workspace=self.workspace,
            channel=self.channel,
            thread=self.thread,
            user=self.user,
            is_direct=self.is_direct,
            extras=dict(extras),
        )


class Destination(BaseModel):
    """Where replies go; serializable so a job can reply after a restart."""

    platform: Platform
    workspace: str
    channel: str
    user: str
    thread: str | None = None
    is_direct: bool = False
    # Platform extras: Slack response_url, Discord interaction token and its expiry, ...
    extras: dict[str, str] = Field(default_factory=dict)

    @property
    def conversation_key(self) -> str:
        """Same key as `Inbound.conversation_key` for the message this replies to."""
        return f"{self.platform}:{self.workspace}:{self.channel}:{self.thread or ''}"


# --- reply parts -------------------------------------------------------------------------


class Text(BaseModel):
    """Markdown text (CommonMark subset: bold, italics, code, fences, links, lists)."""

    kind: Literal["text"] = "text"
    markdown: str


class Fields(BaseModel):
    """A small titled table of label/value rows."""

    kind: Literal["fields"] = "fields"
    title: str
    rows: list[tuple[str, str]]


class Image(BaseModel):
    """An image saved on disk, to upload. `fallback_url` is shown when the upload is refused."""

    kind: Literal["image"] = "image"
    path: Path
    mime: str = "image/png"
    alt: str = ""
    fallback_url: str | None = None


class File(BaseModel):
    """A file saved on disk, uploaded with the message (a report's chart or CSV); `name` is shown."""

    kind: Literal["file"] = "file"
    path: Path
    mime: str = "application/octet-stream"
    name: str


class Link(BaseModel):
    """A link, optionally with the time it stops working (presigned URLs)."""

    kind: Literal["link"] = "link"
    url: str
    label: str
    expires_at: datetime | None = None


class Notice(BaseModel):
    """A one-line status message."""

    kind: Literal["notice"] = "notice"
    level: Literal["info", "success", "warning", "progress"] = "info"
    text: str


class Failure(BaseModel):
    """A failed operation: the backend's code and request id plus a plain next step."""

    kind: Literal["failure"] = "failure"
    code: str
    message: str
    request_id: str | None = None
    hint: str | None = None


class Button(BaseModel):
    """One button; `action_id` routes the click back to the core, `value` carries its data."""

    action_id: str
    label: str
    value: str = ""
    style: Literal["default", "primary", "danger"] = "default"


class Actions(BaseModel):
    """A row of buttons."""

    kind: Literal["actions"] = "actions"
    buttons: list[Button]


Part = Annotated[
    Text | Fields | Image | File | Link | Notice | Failure | Actions, Field(discriminator="kind")
]


def split_files(parts: Sequence[Part]) -> tuple[list[Part], list[File]]:
    """The parts to render as a message, and the files to upload after it (in order)."""
    files = [part for part in parts if isinstance(part, File)]
    return [part for part in parts if not isinstance(part, File)], files


class Reply(BaseModel):
    """A sequence of parts, for storing a rendered reply (e.g. in a job row)."""

    parts: list[Part]


class FormField(BaseModel):
    """One input of a private form. `secret` fields are never echoed (masked where possible)."""

    name: str
    label: str
    secret: bool = True
    placeholder: str = ""
    multiline: bool = False


class FormRequest(BaseModel):
    """Ask for values through a private form (modal / no-echo prompt), never through chat.

    The adapter hands the submitted values to `TokenBot.submit_form(inbound, form_id, values, …)`.
    """

    form_id: str  # routes the submission, e.g. "key.alltoken", "openclaw.register"
    title: str
    fields: list[FormField]
    submit_label: str = "Save"
    intro: str = ""


class MessageRef(BaseModel):
    """A posted message that can be edited later."""

    platform: Platform
    channel: str
    id: str
    extras: dict[str, str] = Field(default_factory=dict)


class Limits(BaseModel):
    """What a platform allows: message length, edit pace, upload size."""

    max_message_chars: int = 4000
    edit_interval_s: float = 1.0
    max_upload_bytes: int = 10 * 1024 * 1024


# --- the protocol each adapter implements ---------------------------------------------------


@runtime_checkable
class TextStream(Protocol):
    """Incrementally delivered text (a streamed model answer)."""

    async def append(self, text: str) -> None:
        """Add text; the adapter decides when to show it (throttled)."""

    async def finish(self, trailer: Sequence[Part] = ()) -> None:
        """Flush everything and show `trailer` (usage and cost line) after the text."""


@runtime_checkable
class Conversation(Protocol):
    """How a handler talks back. Adapters implement it; handlers never see the platform."""

    destination: Destination
    limits: Limits

    async def say(self, parts: Sequence[Part]) -> MessageRef:
        """Post a message visible to the conversation."""

    async def edit(self, ref: MessageRef, parts: Sequence[Part]) -> None:
        """Replace a message posted earlier."""

    def stream(self) -> TextStream:
        """Start a streamed message."""

    async def upload(self, image: Image) -> MessageRef:
        """Upload an image file into the conversation."""

    async def whisper(self, parts: Sequence[Part]) -> None:
        """Show something only the requesting user sees (ephemeral)."""

    async def direct(self, parts: Sequence[Part]) -> None:
        """Send the requesting user a direct message."""

    async def request_form(self, request: FormRequest) -> None:
        """Open a private form; the adapter passes the values to `TokenBot.submit_form`."""

    async def delete_inbound(self) -> bool:
        """Delete the message being handled (a leaked key); False where the platform can't."""
