"""Where the store lives: TOKENBOT_DATABASE_URL (`sqlite:///…` or `postgresql://…`) or a file path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import SplitResult, parse_qs, urlsplit

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True)
class StoreLocation:
    """A parsed database location: a SQLite file, or a PostgreSQL URL (kept whole for asyncpg)."""

    sqlite_path: Path | None = None
    postgres_url: str | None = None


def parse_location(where: Path | str) -> StoreLocation:
    """A Path, a bare file path, `sqlite:///path` or `postgresql://…`; ValueError for anything else.

    As in SQLAlchemy, `sqlite:///data/x.db` is relative and `sqlite:////var/x.db` absolute.
    """
    if isinstance(where, Path):
        return StoreLocation(sqlite_path=where)
    text = where.strip()
    if text.startswith(SQLITE_PREFIX):
        rest = text[len(SQLITE_PREFIX) :]
        if not rest:
            raise ValueError(
                "a sqlite:/// URL needs a file path, e.g. sqlite:///tokenbot-data/tokenbot.db"
            )
        return StoreLocation(sqlite_path=Path(rest))
    scheme, sep, _ = text.partition("://")
    if sep and scheme.lower() in POSTGRES_SCHEMES:
        _check_postgres(text)
        return StoreLocation(postgres_url=text)
    if sep or text.lower().startswith("sqlite:"):
        raise ValueError(
            "TOKENBOT_DATABASE_URL must start with sqlite:/// (a file) or postgresql:// "
            f"(a server); got {redact_url(text)!r}"
        )
    if not text:
        raise ValueError("the database location is empty")
    return StoreLocation(sqlite_path=Path(text))


def _check_postgres(url: str) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"bad port in {redact_url(url)!r}: {exc}") from None


def redact_url(url: str) -> str:
    """`url` without its user's password (and query string, which may carry one)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unparsable URL)"
    if not parts.scheme:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = parts.query
    if query:
        # Keep only a socket directory: passwords may hide in the query too.
        hosts = parse_qs(query).get("host")
        query = f"host={hosts[0]}" if hosts else ""
    return SplitResult(parts.scheme, netloc, parts.path, query, "").geturl()


def server_name(url: str) -> str:
    """Which server and database a URL names, without user or password (for the marker)."""
    parts = urlsplit(url)
    host = parts.hostname or (parse_qs(parts.query).get("host") or [""])[0]
    port = parts.port or 5432
    return f"postgresql://{host}:{port}{parts.path or '/'}"
