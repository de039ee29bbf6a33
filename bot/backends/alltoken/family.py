"""The AllToken command family: the six commands, keys, help, image/video jobs, Cancel."""

from __future__ import annotations

from bot.backends.alltoken import catalog, handlers
from bot.backends.alltoken import grammar as router
from bot.backends.alltoken.failures import render_failure
from bot.backends.alltoken.help import help_
from bot.backends.alltoken.hooks import chat_continuation, resume_thread
from bot.backends.alltoken.image_job import ImageJob
from bot.backends.alltoken.jobs import CANCEL_ACTION
from bot.backends.alltoken.keys import key
from bot.backends.alltoken.service import AllTokenService
from bot.backends.alltoken.spec import (
    SPECS,
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
from bot.core.family import CommandFamily, Wiring
from bot.core.grammar import ParseState
from bot.core.key_forms import key_form_handler
from bot.core.keys import KeyService

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


def _key_service(live: _Live) -> KeyService:
    async def check(secret: str) -> None:
        if live.service is not None:
            await live.service.check_key(secret)

    return KeyService(
        name="alltoken",
        display="AllToken",
        prefix="sk-at-",
        hint="Set your AllToken key with `/alltoken-key` (a private form) or "
        "`/alltoken-key set sk-at-…` as a slash command or in a direct message.",
        backend="alltoken",
        check=check,
        refused_hint="Copy the key again from your AllToken dashboard and retry.",
        render=render_failure,
    )


class _Live:
    """What AllToken's parser may know once the service is attached: the live chat model ids."""

    def __init__(self) -> None:
        self.service: AllTokenService | None = None
        self._source: object = None
        self._chat_models: frozenset[str] = frozenset(catalog.CHAT_MODELS)

    def context(self, state: ParseState) -> router.RouterContext:
        cached = self.service.cached_models("chat") if self.service else None
        if cached is not self._source:
            # Rebuilt only when the service refreshed its cache, not per message.
            self._source = cached
            self._chat_models = (
                frozenset(m.id.lower() for m in cached)
                if cached
                else frozenset(catalog.CHAT_MODELS)
            )
        return router.RouterContext(
            chat_models=self._chat_models,
            last_call_was_alltoken=state.recent_family == "alltoken",
            now=state.now,
        )

    def suggest(self, kind: str) -> list[str]:
        """Model ids for "models:<type>" suggestions, from the cache only (never the network)."""
        if not kind.startswith("models:") or self.service is None:
            return []
        type_ = kind.split(":", 1)[1]
        cached = self.service.cached_models(type_)  # type: ignore[arg-type]
        if cached:
            return [m.id for m in cached]
        # Before the first live list: the catalog's ids (what the Discord adapter offered).
        known = {"chat": catalog.CHAT_MODELS, "image": catalog.IMAGE_MODELS}
        return list(known.get(type_, catalog.VIDEO_MODELS if type_ == "video" else ()))


def alltoken_family() -> CommandFamily:
    """Build the family."""
    live = _Live()

    def attach(wiring: Wiring) -> None:
        settings = wiring.settings
        wiring.metrics.name_backend(settings.alltoken_base_url, "alltoken")
        svc = AllTokenService(
            wiring.http, settings.alltoken_base_url, models_ttl_s=settings.models_cache_ttl_s
        )
        live.service = svc
        wiring.services.add(svc)
        wiring.jobs.register(
            ImageJob(svc, settings.images_dir, settings.image_timeout_s, wiring.services)
        )
        wiring.jobs.register(
            VideoJob(svc, settings.images_dir, settings.video_timeout_s, wiring.services)
        )
        wiring.actions[CANCEL_ACTION] = cancel_video
        wiring.forms["key.alltoken"] = key_form_handler("alltoken")

    return CommandFamily(
        name="alltoken",
        display_name="AllToken",
        parse=lambda text, state: router.parse(text, live.context(state)),
        parse_slash=lambda name, text, state: router.parse_slash(name, text, live.context(state)),
        parse_options=lambda spec, values, state: router.parse_options(
            spec, values, live.context(state)
        ),
        specs=SPECS,
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
        attach=attach,
        keywords=("alltoken", "cost"),
        state_keywords=("cost",),
        markers=("alltoken-", "/alltoken"),
        key_services=(_key_service(live),),
        render_failure=render_failure,
        suggest=live.suggest,
        continue_thread=chat_continuation(catalog.DEFAULT_CHAT_MODEL),
        resume_thread=resume_thread,
        key_command="`/alltoken-key`",
        help_command="`/alltoken-help`",
    )
