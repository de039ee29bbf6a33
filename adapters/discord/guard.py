"""The last line of defence at every Discord entry point: an error becomes a reply with a ref.

Whatever escapes a handler (a bug, an unexpected exception from the core, a delivery failure)
is logged with a short reference and the person is told "something went wrong (ref …)",
privately where Discord allows it. Nothing here may raise: it runs after something already did.
"""

from __future__ import annotations

import logging
import traceback

import aiohttp
import discord

from bot.core.failures import new_error_ref, unexpected_failure

__all__ = ["NO_MENTIONS", "crash_text", "is_transient", "log_crash", "tell_interaction"]

log = logging.getLogger(__name__)

# Every message, edit and follow-up carries this, whatever the client's default says.
NO_MENTIONS = discord.AllowedMentions.none()


def crash_text(ref: str) -> str:
    """The plain-text reply for an unexpected error (no embeds: the fallback must not fail too)."""
    failure = unexpected_failure(ref)
    return f"❌ **{failure.code}**: {failure.message}\n→ {failure.hint}"


def is_transient(exc: BaseException) -> bool:
    """Discord or the network failing for a moment: callers retry or report it themselves, and
    a fallback reply would fail the same way."""
    return isinstance(
        exc,
        (
            discord.DiscordServerError,
            discord.RateLimited,
            aiohttp.ClientError,
            TimeoutError,
            OSError,
        ),
    )


def log_crash(
    logger: logging.Logger, what: str, exc: BaseException, *, secrets_inside: bool = False
) -> str:
    """Log `exc` with a new ref (the same one the user is shown); returns the ref.

    `secrets_inside` (form values in play): log the exception's type and frames but not its
    message, which may quote a value (a validation error quotes its input).
    """
    ref = new_error_ref()
    if secrets_inside:
        frames = "".join(traceback.format_tb(exc.__traceback__))
        logger.error(
            "discord: %s failed (ref %s): %s\n%s", what, ref, type(exc).__name__, frames.rstrip()
        )
    else:
        logger.error("discord: %s failed (ref %s)", what, ref, exc_info=exc)
    return ref


async def tell_interaction(interaction: discord.Interaction, ref: str) -> bool:
    """Tell the person behind an interaction, ephemerally; False when Discord refused."""
    text = crash_text(ref)
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(
                text, ephemeral=True, allowed_mentions=NO_MENTIONS
            )
        else:
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    except Exception:
        log.exception("discord: could not report error ref %s", ref)
        return False
    return True
