"""A throwaway PostgreSQL server for the tests, started from a temp dir with no manual step.

First choice: the `pgserver` wheel (the [test] extra), whose binaries come with it. As root,
pgserver creates an unprivileged system user `pgserver` (useradd), chowns the data dir to it,
makes the dir's parents and its own binaries world-traversable, and runs initdb and pg_ctl
as that user (subprocess `user=`), since PostgreSQL refuses to run as root. It listens on a
unix socket in the data dir only (no TCP port to collide with).

Fallback, when pgserver is missing or fails: initdb/pg_ctl from PATH (or the distro's
/usr/lib/postgresql/*/bin), run as an unprivileged user when we are root. Set
TOKENBOT_TEST_POSTGRES_URL to use a server of your own instead (its user must be allowed
to CREATE DATABASE). Each test gets its own database, created and dropped around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

EXTERNAL_URL_VARIABLE = "TOKENBOT_TEST_POSTGRES_URL"
START_TIMEOUT_S = 60
# Unprivileged users to run PostgreSQL as when the tests run as root, in order of preference.
_SERVICE_USERS = ("pgserver", "postgres", "nobody")


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be started for the tests; the message says what was tried and why."""


@dataclass
class PostgresForTests:
    """A running server: an admin URL, per-test databases, and how to stop it."""

    admin_url: str
    how: str
    started_in_s: float
    _stop: Callable[[], None] = field(repr=False, default=lambda: None)

    def url_for(self, database: str) -> str:
        """The admin URL with another database name."""
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path=f"/{database}"))

    async def create_database(self) -> tuple[str, str]:
        """A new empty database: (its name, its URL)."""
        name = f"tokenbot_test_{uuid.uuid4().hex[:12]}"
        conn = await asyncpg.connect(self.admin_url, timeout=30)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        return name, self.url_for(name)

    async def drop_database(self, name: str) -> None:
        """Drop a test's database, ending any connection a test left open."""
        conn = await asyncpg.connect(self.admin_url, timeout=30)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop the server and delete its files."""
        self._stop()


def start_test_postgres() -> PostgresForTests:
    """A server for this test session; PostgresUnavailable (with every reason) if none starts."""
    external = os.environ.get(EXTERNAL_URL_VARIABLE, "").strip()
    if external:
        return PostgresForTests(
            admin_url=external, how=f"{EXTERNAL_URL_VARIABLE}", started_in_s=0.0
        )
    reasons: list[str] = []
    for attempt in (_start_pgserver, _start_path_binaries):
        base = Path(tempfile.mkdtemp(prefix="tokenbot-pg-"))  # short: a socket path lives here
        began = time.monotonic()
        try:
            server = attempt(base)
        except Exception as exc:
            reasons.append(f"{attempt.__name__.removeprefix('_start_')}: {_describe(exc)}")
            shutil.rmtree(base, ignore_errors=True)
            continue
        try:
            asyncio.run(_tune_for_tests(server.admin_url))
        except Exception as exc:
            server.stop()
            reasons.append(f"{attempt.__name__.removeprefix('_start_')}: {_describe(exc)}")
            continue
        server.started_in_s = time.monotonic() - began
        return server
    raise PostgresUnavailable(
        "no PostgreSQL server could be started for the tests: "
        + "; ".join(reasons)
        + f". Install the [test] extra (pgserver), or PostgreSQL's initdb/pg_ctl, or set "
        f"{EXTERNAL_URL_VARIABLE}"
    )


async def _tune_for_tests(admin_url: str) -> None:
    # A test server's data need not survive a crash: without fsync a CREATE DATABASE per
    # test costs a few milliseconds instead of a few hundred. These settings need a reload only.
    conn = await asyncpg.connect(admin_url, timeout=30)
    try:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            await conn.execute(f"ALTER SYSTEM SET {setting} = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def _describe(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, subprocess.CalledProcessError):
        text = f"{exc.cmd[0]} exited {exc.returncode}: {(exc.stderr or exc.stdout or '')!s}"
    return f"{type(exc).__name__}: {' '.join(text.split())[:400]}"


def _start_pgserver(base: Path) -> PostgresForTests:
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (containers, CI); pgserver only
        # keeps a lock file there, and the fallback it takes (/tmp/runtime-<uid>) is fine.
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(base / "pgdata", cleanup_mode="delete")
    url = server.get_uri()

    def stop() -> None:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)

    return PostgresForTests(admin_url=url, how="pgserver", started_in_s=0.0, _stop=stop)


def _find_binaries() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise FileNotFoundError("no pg_ctl on PATH nor under /usr/lib/postgresql/*/bin")


def _service_user() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in _SERVICE_USERS:
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError(f"running as root and none of the users {_SERVICE_USERS} exists")


def _start_path_binaries(base: Path) -> PostgresForTests:
    bindir = _find_binaries()
    user = _service_user()
    data, socket_dir = base / "data", base / "sock"
    data.mkdir()
    socket_dir.mkdir()
    if user is not None:
        base.chmod(0o755)  # the service user must reach its dirs inside our private temp dir
        for path in (data, socket_dir):
            os.chown(path, user.pw_uid, user.pw_gid)
    uid, gid = (user.pw_uid, user.pw_gid) if user is not None else (None, None)

    def run(*args: str) -> None:
        subprocess.run(
            [str(bindir / args[0]), *args[1:]],
            check=True,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            cwd=base,
            user=uid,  # PostgreSQL refuses to run as root
            group=gid,
        )

    # --no-sync: a test server's data need not survive a power cut.
    run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-k {socket_dir} -c listen_addresses=''"
    run("pg_ctl", "-D", str(data), "-o", options, "-l", str(data / "log"), "-w", "start")

    def stop() -> None:
        with contextlib.suppress(Exception):
            run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)

    url = f"postgresql://postgres@/postgres?host={socket_dir}"
    return PostgresForTests(admin_url=url, how=f"{bindir}/pg_ctl", started_in_s=0.0, _stop=stop)
