"""Settings from TOKENBOT_* / backend env vars and an optional env-style config file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.core.log_setup import DEBUG_ALL


def _config_file() -> str | None:
    # TOKENBOT_CONFIG names an env-style file (see config/tokenbot.example.env).
    return os.environ.get("TOKENBOT_CONFIG") or None


def _alias(*names: str) -> AliasChoices:
    # Only the documented variable names: a field's own name (ADMINS, DATA_DIR …) is never
    # read from the environment or the config file, only accepted as a keyword argument.
    return AliasChoices(*names)


# populate_by_name makes pydantic-settings also read every bare field name (ADMINS=mallory
# made mallory an admin) and keep unknown config-file lines as by-name extras; generic names
# in a container or CI environment must change nothing, so those two sources are filtered.
class _DocumentedNames(PydanticBaseSettingsSource):
    """Passes on only what a source read under a documented variable name (TOKENBOT_ADMINS)."""

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._inner = inner
        self._names = frozenset(
            name
            for field in settings_cls.model_fields.values()
            if isinstance(field.validation_alias, AliasChoices)
            for name in field.validation_alias.choices
            if isinstance(name, str)
        )

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: `__call__` filters the inner source's whole result."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._inner().items() if k in self._names}


class Settings(BaseSettings):
    """Everything tokenbot reads from its environment. Documented in README and config/."""

    # populate_by_name: code and tests build Settings(data_dir=...) by field name.
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments by field name; environment and config file by documented name."""
        return (
            init_settings,
            _DocumentedNames(settings_cls, env_settings),
            _DocumentedNames(settings_cls, dotenv_settings),
            file_secret_settings,
        )

    alltoken_base_url: str = Field(
        "https://api.alltoken.ai", validation_alias=_alias("ALLTOKEN_BASE_URL")
    )
    openmarlin_server_url: str = Field(
        "https://api.openmarlin.ai",
        validation_alias=_alias("OPENMARLIN_SERVER_URL"),
    )
    openclaw_token_api_base: str = Field(
        "https://proxy.openclaw-token.dev/v1",
        validation_alias=_alias("OPENCLAW_TOKEN_API_BASE"),
    )
    # The GitHub OAuth app client id the OpenClaw Token server is configured with (its
    # GITHUB_CLIENT_ID): the server refuses a device-flow sign-in with any other.
    openclaw_github_client_id: str = Field(
        "openclaw-cli",
        validation_alias=_alias("TOKENBOT_OPENCLAW_GITHUB_CLIENT_ID"),
    )
    data_dir: Path = Field(Path("./tokenbot-data"), validation_alias=_alias("TOKENBOT_DATA_DIR"))
    # Where the store lives: sqlite:///path/to/file.db or postgresql://user:pass@host/db;
    # unset, the SQLite file tokenbot.db in the data dir (see `store_url`).
    # A SecretStr: the URL may carry the database password.
    database_url: SecretStr | None = Field(None, validation_alias=_alias("TOKENBOT_DATABASE_URL"))
    master_key: SecretStr | None = Field(None, validation_alias=_alias("TOKENBOT_MASTER_KEY"))
    log_level: str = Field("INFO", validation_alias=_alias("TOKENBOT_LOG_LEVEL"))

    # HTTP behaviour towards the backends.
    http_timeout_s: float = Field(60.0, validation_alias=_alias("TOKENBOT_HTTP_TIMEOUT"))
    models_cache_ttl_s: float = Field(300.0, validation_alias=_alias("TOKENBOT_MODELS_CACHE_TTL"))
    # Jobs: how long an image/video may take before it is reported as timed out.
    image_timeout_s: float = Field(600.0, validation_alias=_alias("TOKENBOT_IMAGE_TIMEOUT"))
    video_timeout_s: float = Field(1800.0, validation_alias=_alias("TOKENBOT_VIDEO_TIMEOUT"))
    max_polls_per_second: float = Field(
        20.0, validation_alias=_alias("TOKENBOT_MAX_POLLS_PER_SECOND")
    )
    # Jobs shared by several replicas: this process's id in the rows it claims (unset: a new
    # unique id per start), how long a claim lasts unrenewed, and how often it is renewed
    # (and the store scanned for jobs whose lease ran out); a renewal not shorter than the
    # lease is replaced by a third of it (bot.core.job_leases.LeasePolicy.from_settings).
    replica_id: str = Field("", validation_alias=_alias("TOKENBOT_REPLICA_ID"))
    job_lease_s: float = Field(30.0, gt=0, validation_alias=_alias("TOKENBOT_JOB_LEASE_SECONDS"))
    job_lease_renew_s: float = Field(
        10.0, gt=0, validation_alias=_alias("TOKENBOT_JOB_LEASE_RENEW_SECONDS")
    )
    # Backpressure (bot.core.job_limits): the most unfinished long jobs (images, videos,
    # OpenMarlin tasks) one user / one workspace may have, counted in the store across
    # replicas; 0 is no limit.
    max_jobs_per_user: int = Field(5, ge=0, validation_alias=_alias("TOKENBOT_MAX_JOBS_PER_USER"))
    max_jobs_per_workspace: int = Field(
        50, ge=0, validation_alias=_alias("TOKENBOT_MAX_JOBS_PER_WORKSPACE")
    )
    # Fair work (bot.core.fair_work): the most messages of one user handled at once (the rest
    # wait in order), and of everyone (waiting users served in turn); 0 is no limit.
    max_handlers_per_user: int = Field(
        4, ge=0, validation_alias=_alias("TOKENBOT_MAX_HANDLERS_PER_USER")
    )
    max_handlers: int = Field(0, ge=0, validation_alias=_alias("TOKENBOT_MAX_HANDLERS"))
    # The garbage collector (bot.core.heap): freeze what startup built, so full collections
    # skip it, and collect the youngest generation every 200,000 allocations instead of 700
    # (0: Python's default). In a 1,000-command burst (bench_burst, 3 repeats, 2 cores) a
    # threshold of 50,000 took the Slack ack p99 from 431 to 264-283 ms and the Discord defer
    # p99 from 505 to 373-396 ms. Since a finished request leaves no garbage (http.release),
    # what a collection walks is chats in flight: at 50,000 a burst of 500 chats paid one 33-39
    # ms pause for nothing collected, at 200,000 none (the 500-chat bench row 0.913/0.917 ->
    # 0.942/0.952; ack bursts and RSS with 1,000 pending jobs unchanged).
    gc_freeze: bool = Field(True, validation_alias=_alias("TOKENBOT_GC_FREEZE"))
    gc_gen0_threshold: int = Field(
        200_000, ge=0, validation_alias=_alias("TOKENBOT_GC_GEN0_THRESHOLD")
    )
    # Conversation context budget (characters) for thread follow-ups.
    context_chars: int = Field(12_000, validation_alias=_alias("TOKENBOT_CONTEXT_CHARS"))

    # Platforms. Slack: bot token required; app token -> Socket Mode, else HTTP mode with
    # the signing secret. Discord: the bot token; the URLs override REST and gateway bases.
    slack_bot_token: SecretStr | None = Field(None, validation_alias=_alias("SLACK_BOT_TOKEN"))
    slack_app_token: SecretStr | None = Field(None, validation_alias=_alias("SLACK_APP_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_alias("SLACK_SIGNING_SECRET")
    )
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_alias("SLACK_API_URL"))
    discord_token: SecretStr | None = Field(None, validation_alias=_alias("DISCORD_TOKEN"))
    discord_api_url: str | None = Field(None, validation_alias=_alias("DISCORD_API_URL"))
    discord_gateway_url: str | None = Field(None, validation_alias=_alias("DISCORD_GATEWAY_URL"))
    # Gateway sharding across replicas: this process opens only these shards ("0,1") of
    # DISCORD_SHARD_COUNT; only the count: every shard in this one process; neither: one
    # unsharded connection. NoDecode: the ids are "0,1", not JSON.
    discord_shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = Field(
        None, validation_alias=_alias("DISCORD_SHARD_IDS")
    )
    discord_shard_count: int | None = Field(
        None, ge=1, validation_alias=_alias("DISCORD_SHARD_COUNT")
    )
    # The HTTP server (Slack HTTP mode, health checks) listens here.
    http_host: str = Field("0.0.0.0", validation_alias=_alias("TOKENBOT_HTTP_HOST"))
    http_port: int = Field(3000, validation_alias=_alias("TOKENBOT_HTTP_PORT"))
    # Platform user ids allowed to run admin commands (comma-separated).
    admins: str = Field("", validation_alias=_alias("TOKENBOT_ADMINS"))
    # Start on an empty or different database although the data dir's store.id says another
    # store lived there (set it for one start, after deciding the old data is gone).
    allow_new_store: bool = Field(False, validation_alias=_alias("TOKENBOT_ALLOW_NEW_STORE"))
    # Usage/audit rows kept in memory while the store cannot write (disk full); then dropped.
    store_max_queued_rows: int = Field(
        10_000,
        ge=0,
        validation_alias=_alias("TOKENBOT_STORE_MAX_QUEUED_ROWS"),
    )

    # Simulator pacing (`make demo`, `tokenbot sim`); unset: the simulators' demo defaults.
    sim_image_seconds: float | None = Field(
        None, ge=0, validation_alias=_alias("TOKENBOT_SIM_IMAGE_SECONDS")
    )
    sim_video_seconds: float | None = Field(
        None, ge=0, validation_alias=_alias("TOKENBOT_SIM_VIDEO_SECONDS")
    )
    sim_tokens_per_second: float | None = Field(
        None, ge=0, validation_alias=_alias("TOKENBOT_SIM_TOKENS_PER_SECOND")
    )
    sim_latency_ms: float | None = Field(
        None, ge=0, validation_alias=_alias("TOKENBOT_SIM_LATENCY_MS")
    )
    sim_video_url_ttl_s: float | None = Field(
        None, ge=0, validation_alias=_alias("TOKENBOT_SIM_VIDEO_URL_TTL")
    )
    sim_openmarlin_task_seconds: float | None = Field(
        None, ge=0, validation_alias=_alias("TOKENBOT_SIM_OPENMARLIN_TASK_SECONDS")
    )

    @field_validator(
        "sim_image_seconds",
        "sim_video_seconds",
        "sim_tokens_per_second",
        "sim_latency_ms",
        "sim_video_url_ttl_s",
        "sim_openmarlin_task_seconds",
        mode="before",
    )
    @classmethod
    def _unset_when_empty(cls, v: object) -> object:
        # `TOKENBOT_SIM_LATENCY_MS=` (as in a copied example file) means "the default".
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _shard_ids(cls, v: object) -> object:
        # DISCORD_SHARD_IDS=0,1 (spaces allowed); empty means unset.
        if isinstance(v, str):
            parts = [p.strip() for p in v.split(",") if p.strip()]
            try:
                return tuple(int(p) for p in parts) or None
            except ValueError:
                raise ValueError(
                    f"DISCORD_SHARD_IDS must be comma-separated shard numbers such as 0,1; got {v}"
                ) from None
        return v

    @field_validator("discord_shard_count", mode="before")
    @classmethod
    def _shard_count(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @model_validator(mode="after")
    def _shards_fit(self) -> Settings:
        ids, count = self.discord_shard_ids, self.discord_shard_count
        if ids is None:
            return self
        if count is None:
            raise ValueError("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (the total of shards)")
        if len(set(ids)) != len(ids) or any(not 0 <= i < count for i in ids):
            raise ValueError(
                f"DISCORD_SHARD_IDS must be distinct numbers from 0 to {count - 1} "
                f"(DISCORD_SHARD_COUNT={count}); got {','.join(map(str, ids))}"
            )
        return self

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
        v = v.strip().upper()
        if v != DEBUG_ALL and v not in logging.getLevelNamesMapping():
            raise ValueError(
                "TOKENBOT_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL "
                f"(or DEBUG-ALL: DEBUG for the libraries too); got {v}"
            )
        return v

    @field_validator("database_url", mode="before")
    @classmethod
    def _database_url(cls, v: object) -> object:
        if isinstance(v, str):
            if not v.strip():
                return None  # `TOKENBOT_DATABASE_URL=` means the default
            from bot.store.location import parse_location

            parse_location(v)  # ValueError: a clear "bad configuration" line at start
            return v.strip()
        return v

    @property
    def db_path(self) -> Path:
        """The SQLite database file used when TOKENBOT_DATABASE_URL is unset."""
        return self.data_dir / "tokenbot.db"

    @property
    def store_url(self) -> str:
        """TOKENBOT_DATABASE_URL, or `sqlite:///` and the data dir's tokenbot.db."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.db_path}"

    @property
    def images_dir(self) -> Path:
        """Where generated images are written before delivery."""
        return self.data_dir / "images"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, the optional config file, then `overrides`."""
    return Settings(_env_file=_config_file(), **overrides)
