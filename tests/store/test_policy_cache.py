"""The per-workspace policy cache: on SQLite every read after the first (and after a write) is
served from memory; on PostgreSQL only while LISTENing, a change on one replica reaching the
other's next command through the NOTIFY each policy write sends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from bot.core.messages import Failure
from bot.sim.alltoken.server import AllTokenSim
from bot.store import SecretBox, Store
from bot.store.policy import NOTIFY_CHANNEL
from tests.store.conftest import BackendUnderTest
from tests.store.test_policy_update import member, two_bots

BEHIND_THE_BACK = "UPDATE workspace_policy SET value = '[\"U_SNEAKY\"]' WHERE platform = 'slack' AND key = 'admins'"


@pytest.fixture
def sqlite_backend(tmp_path: Path) -> BackendUnderTest:
    """A SQLite store in a temp dir."""
    data_dir = tmp_path / "data"
    return BackendUnderTest("sqlite", data_dir / "tokenbot.db", data_dir)


async def _read_until(store: Store, want: dict[str, Any]) -> dict[str, Any]:
    """What `store` reads, polled briefly (a notice arrives just after the other's commit)."""
    got = await store.get_policy("slack", "T1")
    for _ in range(200):
        if got == want:
            break
        await asyncio.sleep(0.01)
        got = await store.get_policy("slack", "T1")
    return got


async def test_sqlite_reads_are_served_from_the_cache_after_a_write(
    sqlite_backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await sqlite_backend.open(box, allow_new_store=True) as store:
        assert store._policy.caching
        await store.set_policy("slack", "T1", "admins", ["U_A"], "U_ROOT")
        # Changed behind the store's back: a read that went to the file would see it.
        await sqlite_backend.raw(BEHIND_THE_BACK)
        assert await store.get_policy("slack", "T1") == {"admins": ["U_A"]}
        # What a caller does to its copy does not reach the cache.
        (await store.get_policy("slack", "T1"))["admins"].append("U_MUTATED")
        assert await store.get_policy("slack", "T1") == {"admins": ["U_A"]}
        # Its own next write reads under the lock: the cache then holds what is stored.
        await store.set_policy("slack", "T1", "channels", ["C1"], "U_ROOT")
        assert await store.get_policy("slack", "T1") == {
            "admins": ["U_SNEAKY"],
            "channels": ["C1"],
        }
        # A workspace read once is cached too (an empty policy included).
        assert await store.get_policy("slack", "T2") == {}
        await sqlite_backend.raw(
            "INSERT INTO workspace_policy VALUES ('slack', 'T2', 'admins', '[]', '', 'x')"
        )
        assert await store.get_policy("slack", "T2") == {}


async def test_a_change_on_one_replica_is_seen_by_the_other_at_once(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    a = await pg_backend.open(box, allow_new_store=True)
    b = await pg_backend.open(box)
    try:
        assert a._policy.caching and b._policy.caching
        assert await b.get_policy("slack", "T1") == {}  # cached as empty
        await a.set_policy("slack", "T1", "admins", ["U_A"], "U_ROOT")
        assert await _read_until(b, {"admins": ["U_A"]}) == {"admins": ["U_A"]}
        await a.update_policy("slack", "T1", "admins", lambda v: [*v, "U_B"], "U_A")
        want: dict[str, Any] = {"admins": ["U_A", "U_B"]}
        assert await _read_until(b, want) == want
        await b.claim_notice("slack", "T1", "2026-12:workspace:80")
        want = {"admins": ["U_A", "U_B"], "notices": {"2026-12:workspace:80": True}}
        assert await _read_until(a, want) == want
    finally:
        await b.close()
        await a.close()


async def test_without_the_notice_a_cached_policy_would_stay_stale(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    """The control for the test above: a write behind the stores' back (no NOTIFY) is not seen,
    so what makes the other replica see a change is the notice, not a missing cache."""
    async with await pg_backend.open(box, allow_new_store=True) as a:
        await a.set_policy("slack", "T1", "admins", ["U_A"], "U_ROOT")
        async with await pg_backend.open(box) as b:
            assert await b.get_policy("slack", "T1") == {"admins": ["U_A"]}
            await pg_backend.raw(BEHIND_THE_BACK)
            await asyncio.sleep(0.2)
            assert await b.get_policy("slack", "T1") == {"admins": ["U_A"]}
            await pg_backend.raw(
                "SELECT pg_notify(?, ?)",
                (NOTIFY_CHANNEL, '{"from": "x", "workspace": ["slack", "T1"]}'),
            )
            assert await _read_until(b, {"admins": ["U_SNEAKY"]}) == {"admins": ["U_SNEAKY"]}


async def test_a_lost_listener_stops_caching_until_it_is_back(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await pg_backend.open(box, allow_new_store=True) as a:
        await a.set_policy("slack", "T1", "admins", ["U_A"], "U_ROOT")
        assert a._policy.caching
        await pg_backend.raw(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        for _ in range(200):
            if not a._policy.caching:
                break
            await asyncio.sleep(0.01)
        assert not a._policy.caching
        # Meanwhile every read goes to the database.
        await pg_backend.raw(BEHIND_THE_BACK)
        assert await a.get_policy("slack", "T1") == {"admins": ["U_SNEAKY"]}
        for _ in range(500):
            if a._policy.caching:
                break
            await asyncio.sleep(0.01)
        assert a._policy.caching  # listening again


def _admins_view(raw: dict[str, Any]) -> tuple[str, ...]:
    _VIEW_CALLS.append(dict(raw))
    raw.setdefault("admins", []).append("U_READER")  # a reader gets its own copy to change
    return tuple(raw["admins"])


_VIEW_CALLS: list[dict[str, Any]] = []


async def test_a_view_is_worked_out_once_per_cached_policy(
    sqlite_backend: BackendUnderTest, box: SecretBox
) -> None:
    """What every command parses from the policy (the gate's rules, the caps) is parsed once
    per change: again after this store's own write and after another replica's notice."""
    _VIEW_CALLS.clear()
    async with await sqlite_backend.open(box, allow_new_store=True) as store:
        await store.set_policy("slack", "T1", "admins", ["U_A"], "U_ROOT")
        for _ in range(3):
            assert await store.policy_view("slack", "T1", _admins_view) == ("U_A", "U_READER")
        assert len(_VIEW_CALLS) == 1
        assert await store.get_policy("slack", "T1") == {"admins": ["U_A"]}  # cache untouched
        await store.set_policy("slack", "T1", "admins", ["U_B"], "U_ROOT")
        assert await store.policy_view("slack", "T1", _admins_view) == ("U_B", "U_READER")
        await sqlite_backend.raw(BEHIND_THE_BACK)
        assert await store.policy_view("slack", "T1", _admins_view) == ("U_B", "U_READER")
        store._policy.forget_cached("slack", "T1")  # what another replica's notice does
        assert await store.policy_view("slack", "T1", _admins_view) == ("U_SNEAKY", "U_READER")
        assert len(_VIEW_CALLS) == 3
        # While not caching (PostgreSQL without its listener) every view reads afresh.
        store._policy._coherent = False
        await store.policy_view("slack", "T1", _admins_view)
        await store.policy_view("slack", "T1", _admins_view)
        assert len(_VIEW_CALLS) == 5


async def test_a_read_that_raced_a_notice_is_not_cached(
    sqlite_backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await sqlite_backend.open(box, allow_new_store=True) as store:
        rows = store._policy
        before = rows._generation
        rows.forget_cached("slack", "T1")  # a notice arrived while the read was under way
        rows._keep("slack", "T1", {"admins": ["U_STALE"]}, before)
        assert ("slack", "T1") not in rows._cache
        assert await store.get_policy("slack", "T1") == {}


async def test_a_replica_gates_its_next_command_by_the_other_replicas_change(
    tmp_path: Path, sim: AllTokenSim, postgres_url: str
) -> None:
    async with two_bots(tmp_path, sim, postgres_url) as (a, b):
        carol = member(b, "UCAROL")
        await carol.send("/alltoken-chat hello")  # b reads (and caches) the policy
        assert not [f for f in _failures(carol) if f.code.startswith("policy")]
        await member(a, "UBOSS").send("/tokenbot admin channels add <#C9|elsewhere>")
        for _ in range(200):
            if (await b.store.get_policy("slack", "w1")).get("channels") == ["C9"]:
                break
            await asyncio.sleep(0.01)
        await carol.send("/alltoken-chat hello again")
        assert _failures(carol)[-1].code == "policy_channel"


def _failures(chat: Any) -> list[Failure]:
    return [
        p
        for e in chat.conv.events
        if e.kind == "whisper"
        for p in e.parts
        if isinstance(p, Failure)
    ]
