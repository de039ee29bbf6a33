"""State that outlives a message, with two stores on one database (two replicas): seen
deliveries, pending confirmations, conversation memory, and the credential cache."""

from __future__ import annotations

import asyncio
import time

from bot.store import Confirmation, Owner, SecretBox, Store, ThreadNote
from bot.store.credentials import NOTIFY_CHANNEL
from tests.store.conftest import BackendUnderTest

ALICE = Owner(platform="slack", workspace="T1", user="U_ALICE")
BOB = Owner(platform="slack", workspace="T1", user="U_BOB")


# --- events_seen ------------------------------------------------------------------------------


async def test_a_delivery_is_first_once_across_two_stores(two: tuple[Store, Store]) -> None:
    a, b = two
    assert await a.events.first_time("slack:event:Ev1", 60) is True
    assert await b.events.first_time("slack:event:Ev1", 60) is False
    assert await a.events.first_time("slack:event:Ev1", 60) is False
    assert await b.events.first_time("slack:event:Ev2", 60) is True


async def test_racing_replicas_get_one_first(two: tuple[Store, Store]) -> None:
    a, b = two
    answers = await asyncio.gather(
        *(store.events.first_time("slack:event:race", 60) for store in (a, b) * 10)
    )
    assert answers.count(True) == 1


async def test_an_expired_key_is_new_again_and_pruned(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, b = two
    now = [1000.0]
    a.events.clock = b.events.clock = lambda: now[0]
    assert await a.events.first_time("k", 10)
    assert not await b.events.first_time("k", 10)
    now[0] += 11
    # Past its expiry the row counts as unseen (even before any prune), on either replica.
    assert await b.events.first_time("k", 10)
    assert not await a.events.first_time("k", 10)
    assert await a.events.first_time("other", 1)
    now[0] += 100
    assert await a.events.prune() == 2
    assert await backend.raw("SELECT COUNT(*) FROM events_seen") == [(0,)]


async def test_the_front_cache_never_invents_a_first(two: tuple[Store, Store]) -> None:
    a, b = two
    assert await a.events.first_time("k", 60)
    b.events.forget_local()  # a fresh process: the store still knows
    assert not await b.events.first_time("k", 60)


# --- confirmations ----------------------------------------------------------------------------


def _pending(token: str, owner: Owner = ALICE, at: float = 1000.0, ttl: float = 60) -> Confirmation:
    return Confirmation(
        token=token,
        owner=owner,
        action="credits.buy",
        payload={"amount": "5"},
        created_at=at,
        expires_at=at + ttl,
    )


async def test_confirmations_are_owner_bound_single_use_and_expire(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    await a.confirmations.offer(_pending("t1"), forget_before=0)
    assert (await b.confirmations.settle(BOB, "t1", "taken", 1001))[0] == "not_yours"
    status, found = await b.confirmations.settle(ALICE, "t1", "taken", 1001)
    assert status == "ok" and found is not None and found.payload == {"amount": "5"}
    assert (await a.confirmations.settle(ALICE, "t1", "taken", 1002))[0] == "taken"
    assert (await a.confirmations.settle(ALICE, "t1", "cancelled", 1002))[0] == "taken"
    await a.confirmations.offer(_pending("late"), forget_before=0)
    status, found = await b.confirmations.settle(ALICE, "late", "taken", 1061)
    assert status == "expired" and found is not None and found.state == "expired"
    assert (await a.confirmations.settle(BOB, "late", "taken", 1061)) == ("expired", None)
    await a.confirmations.offer(_pending("c"), forget_before=0)
    assert (await b.confirmations.settle(ALICE, "c", "cancelled", 1001))[0] == "ok"
    assert (await a.confirmations.settle(ALICE, "c", "taken", 1001))[0] == "cancelled"
    assert (await a.confirmations.settle(ALICE, "unknown", "taken", 1001)) == ("expired", None)


async def test_a_double_click_across_replicas_takes_once(two: tuple[Store, Store]) -> None:
    a, b = two
    await a.confirmations.offer(_pending("t"), forget_before=0)
    results = await asyncio.gather(
        *(s.confirmations.settle(ALICE, "t", "taken", 1001) for s in (a, b) * 5)
    )
    assert [status for status, _ in results].count("ok") == 1
    assert {status for status, _ in results} == {"ok", "taken"}


async def test_an_expiry_is_swept_once_across_replicas(two: tuple[Store, Store]) -> None:
    a, b = two
    await a.confirmations.offer(_pending("t"), forget_before=0)
    assert await b.confirmations.sweep(1010) == []
    swept = await asyncio.gather(a.confirmations.sweep(1061), b.confirmations.sweep(1061))
    [expired] = [item for found in swept for item in found]
    assert expired.token == "t" and expired.expiry_reported
    assert await a.confirmations.sweep(1100) == []
    assert not await b.confirmations.report_expiry("t")  # a late click: already reported


async def test_a_pending_confirmation_survives_a_restart(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await backend.open(box, allow_new_store=True) as first:
        await first.confirmations.offer(_pending("t"), forget_before=0)
    async with await backend.open(box) as second:
        status, found = await second.confirmations.settle(ALICE, "t", "taken", 1030)
    assert status == "ok" and found is not None and found.action == "credits.buy"


async def test_settled_confirmations_are_forgotten_after_two_ttls(
    two: tuple[Store, Store], backend: BackendUnderTest
) -> None:
    a, _ = two
    await a.confirmations.offer(_pending("old"), forget_before=0)
    await a.confirmations.offer(_pending("expired", at=1000), forget_before=0)
    await a.confirmations.settle(ALICE, "old", "taken", 1001)
    await a.confirmations.settle(ALICE, "expired", "taken", 1200)  # too late: expired
    await a.confirmations.offer(_pending("new", at=1200), forget_before=1100)
    kept = {t for (t,) in await backend.raw("SELECT token FROM confirmations")}
    # An expiry not yet handed to the audit log stays until it is.
    assert kept == {"expired", "new"}


# --- conversations ----------------------------------------------------------------------------


async def test_thread_continuations_and_last_family_reach_the_other_replica_and_a_restart(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    a = await backend.open(box, allow_new_store=True)
    b = await backend.open(box)
    try:
        a.conversations.note_family("slack:C1", "alltoken")
        a.conversations.note_thread(
            "slack:C1:1.0", ThreadNote(family="alltoken", command="chat", model="m-1")
        )
        await a.conversations.get("slack:C1")  # flushes a's queue
        record = await b.conversations.get("slack:C1:1.0")
        assert record is not None and record.thread == ThreadNote(
            family="alltoken", command="chat", model="m-1"
        )
        assert (await b.conversations.get("slack:C1")).recent_family == "alltoken"  # type: ignore[union-attr]
        b.conversations.note_family("slack:C1:1.0", "openclaw_token")
        assert (await b.conversations.get("slack:C1:1.0")).thread.model == "m-1"  # type: ignore[union-attr]
        assert await b.conversations.get("slack:C2") is None
    finally:
        await b.close()
        await a.close()
    async with await backend.open(box) as again:
        record = await again.conversations.get("slack:C1:1.0")
    assert record is not None and record.recent_family == "openclaw_token"
    assert record.thread is not None and record.thread.model == "m-1"


async def test_a_message_posted_again_is_found_by_the_other_replica_and_pruned(
    two: tuple[Store, Store],
) -> None:
    a, b = two
    first = {"platform": "discord", "channel": "9", "id": "201", "extras": {}}
    second = {"platform": "discord", "channel": "9", "id": "202", "extras": {"via": "channel"}}
    assert await b.message_replacements.get("discord", "100") is None
    await a.message_replacements.save("discord", "100", first)
    assert await b.message_replacements.get("discord", "100") == first
    await b.message_replacements.save("discord", "100", second)  # the latest copy wins
    assert await a.message_replacements.get("discord", "100") == second
    assert await a.message_replacements.get("slack", "100") is None  # ids are per platform
    rows = a.message_replacements
    later = time.time() + 10 * 24 * 3600.0
    rows.clock = lambda: later  # ten days on: the next write prunes
    rows._pruned_at = 0.0
    await rows.save("discord", "300", first)
    assert await b.message_replacements.get("discord", "100") is None
    assert await b.message_replacements.get("discord", "300") == first


# --- credential cache coherence (PostgreSQL) -------------------------------------------------


async def _read_until(store: Store, owner: Owner, service: str, want: str | None) -> str | None:
    """What `store` reads, polled briefly (a notice arrives just after the other's commit)."""
    got = await store.get_credential(owner, service)
    for _ in range(200):
        if got == want:
            break
        await asyncio.sleep(0.01)
        got = await store.get_credential(owner, service)
    return got


async def test_a_key_set_on_one_replica_is_read_by_the_other_at_once(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    a = await pg_backend.open(box, allow_new_store=True)
    b = await pg_backend.open(box)
    try:
        assert b._credentials.caching
        await a.put_credential(ALICE, "alltoken", "sk-at-old-000000000000")
        assert await b.get_credential(ALICE, "alltoken") == "sk-at-old-000000000000"  # cached
        assert await b.get_credential(BOB, "alltoken") is None  # "none" is cached too
        await a.put_credential(ALICE, "alltoken", "sk-at-new-111111111111")
        await a.put_credential(BOB, "alltoken", "sk-at-bob-222222222222")
        assert await _read_until(b, ALICE, "alltoken", "sk-at-new-111111111111") == (
            "sk-at-new-111111111111"
        )
        assert await _read_until(b, BOB, "alltoken", "sk-at-bob-222222222222") == (
            "sk-at-bob-222222222222"
        )
        await a.delete_credential(ALICE, "alltoken")
        assert await _read_until(b, ALICE, "alltoken", None) is None
        # And the other way round; a's own cache is kept in step by its own writes.
        await b.put_credential(ALICE, "alltoken", "sk-at-fromb-33333333333")
        assert await _read_until(a, ALICE, "alltoken", "sk-at-fromb-33333333333") == (
            "sk-at-fromb-33333333333"
        )
    finally:
        await b.close()
        await a.close()


async def test_without_the_notice_a_cached_key_would_stay_stale(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    """The control for the test above: a write behind the store's back (no NOTIFY) is not seen,
    so what makes the other replica see a change is the notice, not a missing cache."""
    a = await pg_backend.open(box, allow_new_store=True)
    try:
        await a.put_credential(ALICE, "alltoken", "sk-at-old-000000000000")
        b = await pg_backend.open(box)
        try:
            assert await b.get_credential(ALICE, "alltoken") == "sk-at-old-000000000000"
            await pg_backend.raw('DELETE FROM credentials WHERE "user" = ?', (ALICE.user,))
            await asyncio.sleep(0.2)
            assert await b.get_credential(ALICE, "alltoken") == "sk-at-old-000000000000"
            # A notice (as another replica's write sends) makes it read again.
            await pg_backend.raw(
                "SELECT pg_notify(?, ?)",
                (
                    NOTIFY_CHANNEL,
                    '{"from": "x", "owner": ["slack", "T1", "U_ALICE"], "service": "alltoken"}',
                ),
            )
            assert await _read_until(b, ALICE, "alltoken", None) is None
        finally:
            await b.close()
    finally:
        await a.close()


async def test_a_lost_listener_stops_caching_until_it_is_back(
    pg_backend: BackendUnderTest, box: SecretBox
) -> None:
    a = await pg_backend.open(box, allow_new_store=True)
    try:
        await a.put_credential(ALICE, "alltoken", "sk-at-old-000000000000")
        assert a._credentials.caching
        await pg_backend.raw(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        for _ in range(200):
            if not a._credentials.caching:
                break
            await asyncio.sleep(0.01)
        assert not a._credentials.caching
        # Meanwhile every read goes to the database.
        await pg_backend.raw('DELETE FROM credentials WHERE "user" = ?', (ALICE.user,))
        assert await a.get_credential(ALICE, "alltoken") is None
        for _ in range(500):
            if a._credentials.caching:
                break
            await asyncio.sleep(0.01)
        assert a._credentials.caching  # listening again
    finally:
        await a.close()
