"""The cluster's PostgreSQL: the caller's database or one on a pgserver of its own, migrated
with `tokenbot migrate` before any replica starts, as a deploy step would."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path


@contextlib.asynccontextmanager
async def shared_database(database_url: str | None) -> AsyncIterator[str]:
    """The given database URL, or a new database on a pgserver started (and stopped) here."""
    if database_url is not None:
        yield database_url
        return
    from tests.store.postgres_server import start_test_postgres

    server = await asyncio.to_thread(start_test_postgres)
    try:
        name, url = await server.create_database()
        try:
            yield url
        finally:
            await server.drop_database(name)
    finally:
        await asyncio.to_thread(server.stop)


async def migrate(env: dict[str, str], cwd: Path, timeout: float) -> str:
    """Run `tokenbot migrate` with `env`; returns what it printed, raises if it failed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "migrate",
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    if process.returncode != 0:
        raise RuntimeError(f"tokenbot migrate exited {process.returncode}: {out.decode()}")
    return out.decode()
