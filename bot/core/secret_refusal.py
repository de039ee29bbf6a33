"""Keys typed where they do not belong: refused before anything is sent or stored, never echoed."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.core.key_shapes import fingerprint
from bot.core.messages import Conversation, Failure, Inbound, Part

log = logging.getLogger(__name__)

# (command, outcome, detail) -> None: the app's audit writer for this message's owner.
Audit = Callable[[str, str, str], Awaitable[None]]

KEY_FORMS_HINT = (
    "Keys go only through the private forms (each backend's `key` or sign-in command); "
    "leave keys out of prompts."
)


def typed_in_public(inbound: Inbound) -> bool:
    """A message others in the channel can read (slash command text and DMs are not)."""
    return inbound.is_public and not (inbound.is_direct or inbound.command is not None)


async def _delete(conversation: Conversation) -> bool:
    try:
        return await conversation.delete_inbound()
    except Exception:
        log.exception("could not delete a message containing a key")
        return False


async def _whisper(conversation: Conversation, parts: list[Part]) -> None:
    try:
        await conversation.whisper(parts)
    except Exception:
        log.exception("could not deliver a private reply")


async def refuse_secret(
    inbound: Inbound,
    conversation: Conversation,
    keys: list[str],
    hint: str,
    audit: Audit,
    command: str,
) -> None:
    """A key typed where it does not belong: nothing is sent, stored or echoed."""
    public = typed_in_public(inbound)
    deleted = await _delete(conversation) if public else False
    shown = ", ".join(fingerprint(k) for k in keys)
    if deleted:
        seen = " tokenbot deleted your message, but others may have seen it: rotate that key."
    elif public:
        seen = " Everyone in this channel can read your message: rotate that key."
    else:
        seen = ""
    await _whisper(
        conversation,
        [
            Failure(
                code="key_in_text",
                message=f"Your message contains what looks like an API key ({shown}), so "
                f"tokenbot did not run it: nothing was sent to a backend or stored.{seen}",
                hint=hint,
            )
        ],
    )
    await audit(command, "refused", f"key in text {shown}" + (" (deleted)" if deleted else ""))


async def warn_leaked_key(
    inbound: Inbound,
    conversation: Conversation,
    keys: list[str],
    stored_note: bool,
    hint: str,
    audit: Audit,
) -> None:
    """A key pasted where others can read it must be rotated: delete it if possible, say so privately."""
    if not keys or not typed_in_public(inbound):
        return
    deleted = await _delete(conversation)
    shown = ", ".join(fingerprint(k) for k in keys)
    not_stored = " It was not stored." if stored_note else ""
    where = (
        "tokenbot deleted the message, but others may have seen it"
        if deleted
        else "everyone in this channel can read it"
    )
    await _whisper(
        conversation,
        [
            Failure(
                code="key_exposed",
                message=f"Your message contained what looks like an API key ({shown}); {where}.{not_stored}",
                hint=hint,
            )
        ],
    )
    await audit("key.exposed", "deleted" if deleted else "warned", shown)
