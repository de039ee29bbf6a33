"""Typed, versioned job state: upgrades on load, refusals, and how the runner saves and audits it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from bot.backends.alltoken.job_state import ImageState, VideoState
from bot.backends.openmarlin.job_state import TopUpState
from bot.core.job_errors import JobCancelled, JobExpired, JobFailed
from bot.core.job_state import JobState, NoState, StateVersionError, Upgrade
from bot.core.job_triage import NEWER_REPLICA_WAIT_S
from bot.core.jobs import JobContext, JobRunner
from bot.core.messages import Destination, Failure, MessageRef, Notice
from bot.store import Owner, SecretBox, Store
from tests.fakes.conversation import RecordingConversation

OWNER = Owner(platform="console", workspace="w1", user="alice")
DEST = Destination(platform="console", workspace="w1", channel="general", user="alice")


def _rename_path(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data["file_path"] = data.pop("path", None)
    return data


class RenamedState(JobState):
    """Version 2 renamed version 1's `path` to `file_path`."""

    UPGRADES: ClassVar[dict[int, Upgrade]] = {1: _rename_path}

    version: int = 2
    prompt: str
    file_path: str | None = None
    task_id: str | None = None

    @property
    def request_id(self) -> str | None:
        return self.task_id


# -- loading ------------------------------------------------------------------------------------


def test_a_row_without_version_is_version_0_and_loads_with_its_keys() -> None:
    legacy = {
        "prompt": "a pier",
        "model": "m",
        "duration": 5,
        "ratio": "16:9",
        "resolution": "720p",
        "conversation_key": "console:w1:general",
        "submit_started": True,
        "task_id": "vid_1",
    }
    state = VideoState.load(legacy)
    assert state.version == 1 and state.task_id == "vid_1" and state.submit_started
    assert state.request_id == "vid_1" and not state.cancel_requested


def test_upgrades_run_in_order_from_the_row_version() -> None:
    assert RenamedState.load({"prompt": "p", "path": "/x.png"}).file_path == "/x.png"  # 0->1->2
    assert RenamedState.load({"version": 1, "prompt": "p", "path": "/y"}).file_path == "/y"
    assert RenamedState.load({"version": 2, "prompt": "p", "file_path": "/z"}).file_path == "/z"


@pytest.mark.parametrize("version", [3, -1, "1", True, 1.5])
def test_unknown_versions_are_refused(version: object) -> None:
    with pytest.raises(StateVersionError):
        RenamedState.load({"version": version, "prompt": "p"})


def test_a_missing_upgrade_step_is_refused() -> None:
    class Gap(JobState):
        version: int = 3

    with pytest.raises(StateVersionError, match="no upgrade from state version 1"):
        Gap.load({})


def test_unknown_keys_fail_loudly_but_cleared_ones_are_ignored() -> None:
    with pytest.raises(ValidationError, match="path"):
        RenamedState.load({"version": 2, "prompt": "p", "path": "/old"})
    assert RenamedState.load({"version": 2, "prompt": "p", "path": None}).file_path is None


def test_a_state_built_in_code_is_at_the_current_version() -> None:
    assert RenamedState(prompt="p").version == 2
    with pytest.raises(ValidationError, match="version must be 2"):
        RenamedState(prompt="p", version=1)


def test_values_are_typed() -> None:
    state = TopUpState.load({"amount": "12.50"})
    assert str(state.amount) == "12.50"
    assert state.model_dump(mode="json") == {"version": 1, "amount": "12.50", "topup_id": None}
    with pytest.raises(ValidationError):
        TopUpState.load({"amount": "0"})
    with pytest.raises(ValidationError):
        ImageState.load({"prompt": "no model, size, quality or idempotency key"})


# -- the runner ---------------------------------------------------------------------------------


class Scripted:
    """A job kind whose run is given by the test."""

    kind = "scripted"
    command: str | None = "scripted"
    state_model = RenamedState

    def __init__(self) -> None:
        self.seen: list[RenamedState] = []
        self.then: Exception | None = None

    async def run(self, ctx: JobContext[RenamedState]) -> None:
        self.seen.append(ctx.state)
        await ctx.save(task_id="t-1")
        if self.then is not None:
            raise self.then
        await ctx.set_status("done")

    async def report_failure(self, ctx: JobContext[RenamedState], failure: Failure) -> None:
        await ctx.conversation.say([failure])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "tokenbot.db", SecretBox.generate())
    try:
        yield s
    finally:
        await s.close()


def _runner(store: Store) -> tuple[JobRunner, Scripted, RecordingConversation]:
    conv = RecordingConversation(DEST)
    runner = JobRunner(store, lambda _dest: conv)
    kind = Scripted()
    runner.register(kind)
    return runner, kind, conv


async def test_start_takes_the_model_or_a_legacy_dict(store: Store) -> None:
    runner, kind, _ = _runner(store)
    by_model = await runner.start("scripted", OWNER, DEST, RenamedState(prompt="a"))
    by_dict = await runner.start("scripted", OWNER, DEST, {"prompt": "b", "path": "/p"})
    assert await runner.wait_idle(5)
    assert by_model.state["version"] == 2 and by_dict.state["file_path"] == "/p"
    assert sorted(s.prompt for s in kind.seen) == ["a", "b"]
    with pytest.raises(TypeError, match="RenamedState, not NoState"):
        await runner.start("scripted", OWNER, DEST, NoState())
    with pytest.raises(ValidationError):
        await runner.start("scripted", OWNER, DEST, {"prompt": "c", "colour": "red"})
    assert len(await store.jobs_for(OWNER)) == 2  # no row for a refused state


async def test_save_writes_only_its_keys(store: Store) -> None:
    runner, _kind, _ = _runner(store)

    class Racing(Scripted):
        async def run(self, ctx: JobContext[RenamedState]) -> None:
            # Another path (a button) writes the row while the job holds an older state.
            await ctx.store.update_job(ctx.job.id, state={"file_path": "/set-by-button"})
            await ctx.save(task_id="t-2")
            await ctx.set_status("done")

    runner.register(Racing())
    job = await runner.start("scripted", OWNER, DEST, {"prompt": "p"})
    assert await runner.wait_idle(5)
    saved = await store.get_job(job.id)
    assert saved is not None and saved.state["file_path"] == "/set-by-button"
    assert saved.state["task_id"] == "t-2"


async def test_a_resumed_old_row_is_written_back_upgraded(store: Store) -> None:
    from bot.store import JobRecord

    await store.create_job(
        JobRecord(
            id="old",
            kind="scripted",
            owner=OWNER,
            destination=DEST,
            state={"prompt": "p", "path": "/old.png"},
            status="running",
        )
    )
    runner, _kind, _ = _runner(store)
    assert await runner.resume() == 1
    assert await runner.wait_idle(5)
    row = await store.get_job("old")
    assert row is not None and row.status == "done"
    # The dropped key is cleared (rows merge key by key), and the row loads as version 2.
    assert row.state == {
        "version": 2,
        "prompt": "p",
        "file_path": "/old.png",
        "task_id": "t-1",
        "path": None,
    }
    assert RenamedState.load(row.state).file_path == "/old.png"


async def test_unloadable_and_newer_rows_are_quarantined(store: Store) -> None:
    from bot.store import JobRecord

    for job_id, state in [
        ("newer", {"version": 9, "prompt": "p"}),
        ("renamed", {"version": 2, "prompt": "p", "path": "/left-over"}),
        ("missing", {"path": "/no-prompt"}),
    ]:
        await store.create_job(
            JobRecord(
                id=job_id,
                kind="scripted",
                owner=OWNER,
                destination=DEST,
                state=state,
                status="running",
            )
        )
    runner, kind, conv = _runner(store)
    assert await runner.resume() == 0
    rows = {j.id: j for j in await store.jobs_for(OWNER)}
    assert rows["missing"].status == "quarantined"  # no release writes that: at once
    assert "prompt: Field required" in (rows["missing"].error or "")
    # A newer version, or only fields this code lacks: left for a newer replica first.
    assert rows["newer"].status == rows["renamed"].status == "running"
    assert len(conv.events) == 1
    assert await runner.claim_available(time.time() + NEWER_REPLICA_WAIT_S) == (0, 0)
    rows = {j.id: j for j in await store.jobs_for(OWNER)}
    assert {j.status for j in rows.values()} == {"quarantined"}
    assert "newer than this tokenbot reads" in (rows["newer"].error or "")
    assert "path: Extra inputs are not permitted" in (rows["renamed"].error or "")
    assert not kind.seen and len(conv.events) == 3  # each owner is told


@pytest.mark.parametrize(
    ("then", "outcome", "detail"),
    [
        (None, "ok", None),
        (
            JobFailed(Failure(code="upstream_content_violation", message="no")),
            "failed",
            "upstream_content_violation",
        ),
        (JobExpired(Failure(code="timeout", message="slow")), "expired", "timeout"),
        (JobCancelled(), "cancelled", None),
        (RuntimeError("boom"), "failed", "RuntimeError (ref "),
    ],
)
async def test_the_end_of_a_job_is_audited(
    store: Store, then: Exception | None, outcome: str, detail: str | None
) -> None:
    runner, kind, _ = _runner(store)
    kind.then = then
    job = await runner.start("scripted", OWNER, DEST, {"prompt": "p"})
    assert await runner.wait_idle(5)
    [entry] = await store.list_audit(OWNER)
    assert (entry.command, entry.outcome) == ("scripted", outcome)
    assert (entry.detail or "").startswith(detail or "") and bool(entry.detail) == bool(detail)
    assert entry.request_id == "t-1"  # the task id the job saved
    row = await store.get_job(job.id)
    assert row is not None and row.status == {"ok": "done", "cancelled": "cancelled"}.get(
        outcome, "failed"
    )


async def test_a_failure_names_its_own_request_id(store: Store) -> None:
    runner, kind, _ = _runner(store)
    kind.then = JobFailed(Failure(code="bad", message="x", request_id="req-9"))
    await runner.start("scripted", OWNER, DEST, {"prompt": "p"})
    assert await runner.wait_idle(5)
    [entry] = await store.list_audit(OWNER)
    assert (entry.outcome, entry.request_id) == ("failed", "req-9")


async def test_a_job_stopped_by_its_cancel_button_is_audited_once(store: Store) -> None:
    runner, _kind, conv = _runner(store)

    class Waits(Scripted):
        async def run(self, ctx: JobContext[RenamedState]) -> None:
            await ctx.save(task_id="t-3")
            await ctx.conversation.say([Notice(text="waiting")])
            await asyncio.Event().wait()

    runner.register(Waits())
    job = await runner.start("scripted", OWNER, DEST, {"prompt": "p"})
    await conv.wait_for(lambda c: c.events)
    # What a Cancel/Stop button does: mark the row, then stop the local task.
    assert await store.transition_job(job.id, {"pending", "running"}, "cancelled")
    await runner.cancel_local(job.id)
    # A second click stops at the compare-and-set, before cancel_local.
    assert not await store.transition_job(job.id, {"pending", "running"}, "cancelled")
    entries = await store.list_audit(OWNER)
    assert [(e.command, e.outcome, e.request_id) for e in entries] == [
        ("scripted", "cancelled", "t-3")
    ]


async def test_shutdown_audits_nothing(store: Store) -> None:
    runner, _kind, conv = _runner(store)

    class Waits(Scripted):
        async def run(self, ctx: JobContext[RenamedState]) -> None:
            await ctx.conversation.say([Notice(text="waiting")])
            await asyncio.Event().wait()

    runner.register(Waits())
    job = await runner.start("scripted", OWNER, DEST, {"prompt": "p"})
    await conv.wait_for(lambda c: c.events)
    await runner.cancel_local(job.id)  # stopped, but the row stays resumable
    await runner.aclose()
    assert await store.list_audit(OWNER) == []
    row = await store.get_job(job.id)
    assert row is not None and row.status == "running"


async def test_a_kind_that_audits_itself_opts_out(store: Store) -> None:
    runner, _kind, _ = _runner(store)

    class SelfAudited(Scripted):
        command = None

    runner.register(SelfAudited())
    await runner.start("scripted", OWNER, DEST, {"prompt": "p"})
    assert await runner.wait_idle(5)
    assert await store.list_audit(OWNER) == []


def test_a_bad_state_model_is_refused_at_registration(store: Store) -> None:
    class Bad(Scripted):
        state_model = dict  # type: ignore[assignment]

    runner = JobRunner(store, lambda _dest: RecordingConversation(DEST))
    with pytest.raises(TypeError, match="state_model"):
        runner.register(Bad())


def test_message_refs_are_typed_in_state() -> None:
    ref = MessageRef(platform="console", channel="general", id="7")
    state = VideoState.load(
        {
            "prompt": "p",
            "model": "m",
            "duration": 5,
            "ratio": "16:9",
            "resolution": "720p",
            "progress_ref": ref.model_dump(mode="json"),
        }
    )
    assert state.progress_ref == ref
