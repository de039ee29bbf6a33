"""A job's destination carries platform credentials (a Discord interaction token, a Slack
response_url): the row keeps it sealed under the master key, on both backends; rows written
before sealing still read, and a tampered one is reported, not crashed on."""

from __future__ import annotations

import json

from bot.store import JobRecord, Owner, SecretBox
from tests.store.conftest import BackendUnderTest

ALICE = Owner(platform="discord", workspace="G1", user="42")
TOKEN = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5MDEyMzQ1Njc4OnNlY3JldC10b2tlbi1ub3QtZm9yLXRoZS1kYg"
RESPONSE_URL = "https://hooks.slack.com/commands/T1/1234/never-in-a-row"
DESTINATION = {
    "platform": "discord",
    "workspace": "G1",
    "channel": "c1",
    "user": "42",
    "extras": {"interaction_token": TOKEN, "response_url": RESPONSE_URL},
}


def _job(job_id: str) -> JobRecord:
    return JobRecord(id=job_id, kind="image", owner=ALICE, destination=DESTINATION)


async def test_the_destination_is_sealed_at_rest_and_reads_back(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await backend.open(box, allow_new_store=True) as store:
        await store.create_job(_job("j1"))
        [(raw,)] = await backend.raw("SELECT destination FROM jobs WHERE id = ?", ("j1",))
        assert TOKEN not in raw and RESPONSE_URL not in raw and not raw.startswith("{")
        got = await store.get_job("j1")
        assert got is not None and got.destination == DESTINATION
        assert [j.destination for j in await store.unfinished_jobs()] == [DESTINATION]
    if backend.is_sqlite:
        # Nowhere in the file either (nor in its write-ahead log).
        for path in backend.data_dir.glob("tokenbot.db*"):
            data = path.read_bytes()
            assert TOKEN.encode() not in data and RESPONSE_URL.encode() not in data


async def test_a_row_from_before_sealing_still_reads(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await backend.open(box, allow_new_store=True) as store:
        await store.create_job(_job("old"))
        await backend.raw(
            "UPDATE jobs SET destination = ? WHERE id = ?", (json.dumps(DESTINATION), "old")
        )
        got = await store.get_job("old")
        assert got is not None and got.destination == DESTINATION


async def test_a_tampered_destination_is_reported_not_raised(
    backend: BackendUnderTest, box: SecretBox
) -> None:
    async with await backend.open(box, allow_new_store=True) as store:
        await store.create_job(_job("bad"))
        await store.create_job(_job("good"))
        [(raw,)] = await backend.raw("SELECT destination FROM jobs WHERE id = ?", ("bad",))
        flipped = raw[:-6] + ("A" if raw[-6] != "A" else "B") + raw[-5:]
        await backend.raw("UPDATE jobs SET destination = ? WHERE id = ?", (flipped, "bad"))
        jobs, unreadable = await store.load_unfinished_jobs()
        assert [j.id for j in jobs] == ["good"]
        assert [u.id for u in unreadable] == ["bad"] and unreadable[0].destination is None
        assert unreadable[0].owner == ALICE
        assert await store.get_job("bad") is None  # absent to a click, the row kept as it is
