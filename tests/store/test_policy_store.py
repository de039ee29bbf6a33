"""Workspace policy and workspace keys on both backends: JSON values per key, single-use
notices across replicas, and workspace keys encrypted at rest like every credential."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.store import WORKSPACE_USER, Owner, Store
from tests.store.conftest import BackendUnderTest

WORKSPACE_KEY = "sk-at-Wk5PlaintextWorkspaceKey7Qz"
ALICE = Owner(platform="slack", workspace="T1", user="U_ALICE")


async def test_policy_values_are_json_per_key_and_workspace(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, b = two
    assert await a.get_policy("slack", "T1") == {}
    await a.set_policy("slack", "T1", "admins", ["U_ALICE"], "U_ROOT")
    await a.set_policy("slack", "T1", "channels", None, "U_ROOT")
    budget: dict[str, object] = {
        "workspace_monthly_usd": "100.00",
        "user_daily_usd": None,
        "own_key_opt_in": [],
    }
    await a.set_policy("slack", "T1", "budget", budget, "U_ROOT")
    await b.set_policy("slack", "T1", "admins", ["U_ALICE", "U_BOB"], "U_ALICE")  # replaces
    await a.set_policy("discord", "T1", "admins", ["42"], "7")
    assert await b.get_policy("slack", "T1") == {
        "admins": ["U_ALICE", "U_BOB"],
        "budget": budget,
        "channels": None,
    }
    assert await a.get_policy("discord", "T1") == {"admins": ["42"]}
    assert await a.get_policy("slack", "T2") == {}
    [(who,)] = await backend.raw(
        "SELECT updated_by FROM workspace_policy WHERE platform = 'slack' AND key = 'admins'"
    )
    assert who == "U_ALICE"
    with pytest.raises(TypeError):
        await a.set_policy("slack", "T1", "bad", {1, 2}, "U_ROOT")  # not JSON
    assert "bad" not in await a.get_policy("slack", "T1")


async def test_a_notice_is_claimed_once_across_replicas(two: tuple[Store, Store]) -> None:
    a, b = two
    claims = await asyncio.gather(
        *(store.claim_notice("slack", "T1", "2026-12:workspace:80") for store in [a, b] * 10)
    )
    assert claims.count(True) == 1
    assert await a.claim_notice("slack", "T1", "2026-12:workspace:100") is True
    assert await b.claim_notice("slack", "T2", "2026-12:workspace:80") is True  # other workspace
    assert await b.claim_notice("slack", "T1", "2026-12-02:U_ALICE:80") is True
    assert await a.claim_notice("slack", "T1", "2026-12-02:U_ALICE:80") is False
    notices = (await a.get_policy("slack", "T1"))["notices"]
    assert set(notices) == {
        "2026-12:workspace:80",
        "2026-12:workspace:100",
        "2026-12-02:U_ALICE:80",
    }


async def test_notices_of_earlier_months_are_forgotten(two: tuple[Store, Store]) -> None:
    a, _ = two
    assert await a.claim_notice("slack", "T1", "2026-11:workspace:80")
    assert await a.claim_notice("slack", "T1", "2026-11-30:U_ALICE:80")
    assert await a.claim_notice("slack", "T1", "custom-key")
    assert await a.claim_notice("slack", "T1", "2026-12:workspace:80")
    notices = (await a.get_policy("slack", "T1"))["notices"]
    assert set(notices) == {"custom-key", "2026-12:workspace:80"}


async def test_workspace_keys_are_encrypted_at_rest(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, b = two
    info = await a.put_workspace_key("slack", "T1", "alltoken", WORKSPACE_KEY, by_user="U_ROOT")
    assert info.fingerprint == "…" + WORKSPACE_KEY[-4:]
    assert WORKSPACE_KEY not in info.model_dump_json()
    assert await b.get_workspace_key("slack", "T1", "alltoken") == WORKSPACE_KEY
    assert await b.get_workspace_key("slack", "T2", "alltoken") is None
    shown = await b.workspace_key_info("slack", "T1", "alltoken")
    assert shown is not None and shown.meta == {"set_by": "U_ROOT"}
    # Stored as every credential is, under the pseudo-user; never a member's own key.
    rows = await backend.raw('SELECT "user", service, ciphertext FROM credentials')
    assert [(user, service) for user, service, _ in rows] == [(WORKSPACE_USER, "alltoken")]
    assert all(WORKSPACE_KEY.encode() not in bytes(cipher) for _, _, cipher in rows)
    assert await a.list_credentials(ALICE) == []
    assert await a.get_credential(ALICE, "alltoken") is None
    await a.close()
    await b.close()
    if isinstance(backend.where, Path):
        for path in backend.where.parent.glob(f"{backend.where.name}*"):  # file, -wal, -shm
            assert WORKSPACE_KEY.encode() not in path.read_bytes(), path


async def test_deleting_a_workspace_key(two: tuple[Store, Store]) -> None:
    a, b = two
    await a.put_workspace_key("slack", "T1", "openmarlin", WORKSPACE_KEY)
    assert (await a.workspace_key_info("slack", "T1", "openmarlin")) is not None
    assert await b.delete_workspace_key("slack", "T1", "openmarlin") is True
    assert await b.delete_workspace_key("slack", "T1", "openmarlin") is False
    b.forget_cached_credentials()  # SQLite: another process's delete, as a notice would
    a.forget_cached_credentials()
    assert await a.get_workspace_key("slack", "T1", "openmarlin") is None
    assert await a.workspace_key_info("slack", "T1", "openmarlin") is None
