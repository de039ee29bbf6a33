"""Logging: stderr plus a file in the data dir, with every key-shaped string redacted."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from bot.core.key_shapes import contains_key, redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# TOKENBOT_LOG_LEVEL=DEBUG-ALL: DEBUG for these libraries too; at any other level they log
# warnings only (aiosqlite alone logs every query at DEBUG, thousands of lines a minute).
DEBUG_ALL = "DEBUG-ALL"
LIBRARY_LOGGERS = (
    "aiosqlite",
    "asyncio",
    "httpx",
    "httpcore",
    "hpack",
    "aiohttp",
    "slack_bolt",
    "slack_sdk",
    "discord",
    "websockets",
    "hypothesis",
    "PIL",
    "markdown_it",
    "urllib3",
)


def quiet_libraries(level: int = logging.WARNING) -> None:
    """Set the third-party loggers to `level` (NOTSET: follow the root logger)."""
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)


class RedactKeys(logging.Filter):
    """Rewrites a record whose message contains something shaped like a key."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if contains_key(message):
            record.msg = redact(message)
            record.args = None
        if (
            record.exc_info
            and record.exc_info[1] is not None
            and contains_key(str(record.exc_info[1]))
        ):
            # Tracebacks can quote a key from an exception message; drop the details.
            record.exc_info = None
            record.exc_text = None
            record.msg = f"{record.msg} (traceback withheld: it contained a key-shaped string)"
        return True


def configure_logging(level: str, data_dir: Path | None, *, stderr: bool = True) -> Path | None:
    """Install handlers on the root logger; returns the log file path when there is one.

    `level` applies to tokenbot's own loggers; "DEBUG-ALL" is DEBUG for the libraries too."""
    everything = level.upper() == DEBUG_ALL
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if everything else level.upper())
    quiet_libraries(logging.NOTSET if everything else logging.WARNING)
    for handler in list(root.handlers):
        if getattr(handler, "_tokenbot", False):
            root.removeHandler(handler)
            handler.close()
    redactor = RedactKeys()
    log_file: Path | None = None
    handlers: list[logging.Handler] = []
    if stderr:
        handlers.append(logging.StreamHandler())
    if data_dir is not None:
        log_dir = data_dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = log_dir / "tokenbot.log"
        handlers.append(
            logging.handlers.RotatingFileHandler(log_file, maxBytes=10_000_000, backupCount=3)
        )
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(redactor)
        handler._tokenbot = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    return log_file
