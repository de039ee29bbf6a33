"""The store tests run once per backend: `backend` is SQLite in a temp dir, or a fresh PostgreSQL
database on the session's real server (tests/conftest.py: postgres_server)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bot.store import SecretBox, Store
from bot.store.postgres import to_numbered

BACKENDS = ("sqlite", "postgresql")


@dataclass(frozen=True)
class BackendUnderTest:
    """Where a test's store lives, and raw access to it behind the Store's back."""

    name: str
    where: Path | str  # the SQLite file, or the PostgreSQL URL
    data_dir: Path

    @property
    def is_sqlite(self) -> bool:
        return self.name == "sqlite"

    async def open(self, box: SecretBox, **kw: Any) -> Store:
        """`Store.open` as tokenbot calls it (the marker in the data dir for both backends)."""
        return await Store.open(self.where, box, data_dir=self.data_dir, **kw)

    async def raw(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (`?` placeholders) on a connection of its own; the rows as tuples."""
        if isinstance(self.where, Path):
            with sqlite3.connect(self.where) as conn:
                return [tuple(r) for r in conn.execute(sql, params).fetchall()]
        conn = await asyncpg.connect(self.where)
        try:
            return [tuple(r) for r in await conn.fetch(to_numbered(sql), *params)]
        finally:
            await conn.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> BackendUnderTest:
    """SQLite or PostgreSQL; the PostgreSQL server is started only when a test asks for it."""
    data_dir = tmp_path / "data"
    if request.param == "sqlite":
        return BackendUnderTest("sqlite", data_dir / "tokenbot.db", data_dir)
    url: str = request.getfixturevalue("postgres_url")
    return BackendUnderTest("postgresql", url, data_dir)


@pytest.fixture
def pg_backend(postgres_url: str, tmp_path: Path) -> BackendUnderTest:
    """PostgreSQL only, for what SQLite has no counterpart of."""
    return BackendUnderTest("postgresql", postgres_url, tmp_path / "data")


@pytest.fixture
def box() -> SecretBox:
    return SecretBox.generate()


@pytest.fixture
async def two(backend: BackendUnderTest, box: SecretBox) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two replicas would open it."""
    a = await backend.open(box, allow_new_store=True)
    b = await backend.open(box)
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()
