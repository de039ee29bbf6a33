"""Settings from TOKENBOT_* / backend env vars and an optional env-style config file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _config_file() -> str | None:
    # TOKENBOT_CONFIG names an env-style file (see config/tokenbot.example.env).
    return os.environ.get("TOKENBOT_CONFIG") or None


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Everything tokenbot reads from its environment. Documented in README and config/."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    alltoken_base_url: str = Field(
        "https://api.alltoken.ai", validation_alias=_alias("ALLTOKEN_BASE_URL", "alltoken_base_url")
    )
    openmarlin_server_url: str = Field(
        "https://api.openmarlin.ai",
        validation_alias=_alias("OPENMARLIN_SERVER_URL", "openmarlin_server_url"),
    )
    openclaw_token_api_base: str = Field(
        "https://proxy.openclaw-token.dev/v1",
        validation_alias=_alias("OPENCLAW_TOKEN_API_BASE", "openclaw_token_api_base"),
    )
    data_dir: Path = Field(
        Path("./tokenbot-data"), validation_alias=_alias("TOKENBOT_DATA_DIR", "data_dir")
    )
    master_key: SecretStr | None = Field(
        None, validation_alias=_alias("TOKENBOT_MASTER_KEY", "master_key")
    )
    log_level: str = Field("INFO", validation_alias=_alias("TOKENBOT_LOG_LEVEL", "log_level"))

    # HTTP behaviour towards the backends.
    http_timeout_s: float = Field(
        60.0, validation_alias=_alias("TOKENBOT_HTTP_TIMEOUT", "http_timeout_s")
    )
    models_cache_ttl_s: float = Field(
        300.0, validation_alias=_alias("TOKENBOT_MODELS_CACHE_TTL", "models_cache_ttl_s")
    )
    # Jobs: how long an image/video may take before it is reported as timed out.
    image_timeout_s: float = Field(
        600.0, validation_alias=_alias("TOKENBOT_IMAGE_TIMEOUT", "image_timeout_s")
    )
    video_timeout_s: float = Field(
        1800.0, validation_alias=_alias("TOKENBOT_VIDEO_TIMEOUT", "video_timeout_s")
    )
    max_polls_per_second: float = Field(
        20.0, validation_alias=_alias("TOKENBOT_MAX_POLLS_PER_SECOND", "max_polls_per_second")
    )
    # Conversation context budget (characters) for thread follow-ups.
    context_chars: int = Field(
        12_000, validation_alias=_alias("TOKENBOT_CONTEXT_CHARS", "context_chars")
    )

    # Platforms. Slack: bot token required; app token -> Socket Mode, else HTTP mode with
    # the signing secret. Discord: the bot token; the URLs override REST and gateway bases.
    slack_bot_token: SecretStr | None = Field(
        None, validation_alias=_alias("SLACK_BOT_TOKEN", "slack_bot_token")
    )
    slack_app_token: SecretStr | None = Field(
        None, validation_alias=_alias("SLACK_APP_TOKEN", "slack_app_token")
    )
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_alias("SLACK_SIGNING_SECRET", "slack_signing_secret")
    )
    slack_api_url: str = Field(
        "https://slack.com/api/", validation_alias=_alias("SLACK_API_URL", "slack_api_url")
    )
    discord_token: SecretStr | None = Field(
        None, validation_alias=_alias("DISCORD_TOKEN", "discord_token")
    )
    discord_api_url: str | None = Field(
        None, validation_alias=_alias("DISCORD_API_URL", "discord_api_url")
    )
    discord_gateway_url: str | None = Field(
        None, validation_alias=_alias("DISCORD_GATEWAY_URL", "discord_gateway_url")
    )
    # The HTTP server (Slack HTTP mode, health checks) listens here.
    http_host: str = Field("0.0.0.0", validation_alias=_alias("TOKENBOT_HTTP_HOST", "http_host"))
    http_port: int = Field(3000, validation_alias=_alias("TOKENBOT_HTTP_PORT", "http_port"))
    # Platform user ids allowed to run admin commands (comma-separated).
    admins: str = Field("", validation_alias=_alias("TOKENBOT_ADMINS", "admins"))
    # Start on an empty or different database although the data dir's store.id says another
    # store lived there (set it for one start, after deciding the old data is gone).
    allow_new_store: bool = Field(
        False, validation_alias=_alias("TOKENBOT_ALLOW_NEW_STORE", "allow_new_store")
    )
    # Usage/audit rows kept in memory while the store cannot write (disk full); then dropped.
    store_max_queued_rows: int = Field(
        10_000,
        ge=0,
        validation_alias=_alias("TOKENBOT_STORE_MAX_QUEUED_ROWS", "store_max_queued_rows"),
    )

    @property
    def admin_ids(self) -> frozenset[str]:
        """TOKENBOT_ADMINS as a set of platform user ids."""
        return frozenset(a.strip() for a in self.admins.split(",") if a.strip())

    @field_validator("alltoken_base_url", "openclaw_token_api_base")
    @classmethod
    def _strip_slash(cls, v: str) -> str:
        return v.rstrip("/")

    @field_validator("openmarlin_server_url")
    @classmethod
    def _bare_origin(cls, v: str) -> str:
        v = v.rstrip("/")
        if v.endswith("/v1"):
            raise ValueError(
                "OPENMARLIN_SERVER_URL must be a bare origin such as https://api.openmarlin.ai "
                f"(without /v1); got {v}"
            )
        return v

    @field_validator("log_level")
    @classmethod
    def _level(cls, v: str) -> str:
        return v.upper()

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.data_dir / "tokenbot.db"

    @property
    def images_dir(self) -> Path:
        """Where generated images are written before delivery."""
        return self.data_dir / "images"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, the optional config file, then `overrides`."""
    return Settings(_env_file=_config_file(), **overrides)
