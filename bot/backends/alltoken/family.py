"""The AllToken command family: the six commands, keys, help, image/video jobs, Cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.backends.alltoken import grammar as router
from bot.backends.alltoken import handlers
from bot.backends.alltoken.help import help_
from bot.backends.alltoken.image_job import ImageJob
from bot.backends.alltoken.jobs import CANCEL_ACTION
from bot.backends.alltoken.spec import (
    ChatCommand,
    CostCommand,
    HelpCommand,
    ImageCommand,
    KeyCommand,
    ModelsCommand,
    SearchCommand,
    VideoCommand,
)
from bot.backends.alltoken.video_job import VideoJob, cancel_video
from bot.core.family import CommandFamily
from bot.core.keys import key, key_form_handler

if TYPE_CHECKING:
    from bot.core.app import TokenBot
SLASH_COMMANDS = (
    "/alltoken-chat",
    "/alltoken-image",
    "/alltoken-video",
    "/alltoken-search",
    "/alltoken-models",
    "/alltoken-cost",
    "/alltoken-key",
    "/alltoken-help",
)


def _attach(bot: TokenBot) -> None:
    svc = bot.services.alltoken
    bot.jobs.register(ImageJob(svc, bot.settings.images_dir, bot.settings.image_timeout_s))
    bot.jobs.register(VideoJob(svc, bot.settings.images_dir, bot.settings.video_timeout_s))
    bot.actions[CANCEL_ACTION] = cancel_video
    bot.forms["key.alltoken"] = key_form_handler("alltoken")


def alltoken_family() -> CommandFamily:
    """Build the family."""
    return CommandFamily(
        name="alltoken",
        parse=router.parse,
        parse_slash=router.parse_slash,
        slash_commands=SLASH_COMMANDS,
        handlers={
            ChatCommand: handlers.chat,
            SearchCommand: handlers.search,
            ModelsCommand: handlers.models,
            CostCommand: handlers.cost,
            ImageCommand: handlers.image,
            VideoCommand: handlers.video,
            KeyCommand: key,
            HelpCommand: help_,
        },
        attach=_attach,
        keywords=("alltoken", "cost"),
    )
