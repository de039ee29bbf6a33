"""Images and videos as durable jobs, over real HTTP to the simulator, including restarts."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import httpx

from bot.backends.alltoken.jobs import CANCEL_ACTION
from bot.backends.alltoken.service import AllTokenService
from bot.core.app import TokenBot
from bot.core.messages import Actions, Destination, Failure, Image, Link
from bot.sim.alltoken.server import AllTokenSim
from bot.store.models import JobMedia
from tests.conftest import Chat, make_settings
from tests.fakes.conversation import RecordingConversation, stop_jobs_while_posting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


async def add_fault(sim: AllTokenSim, **fault: object) -> None:
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{sim.base_url}/_sim/faults", json=fault)
        assert r.status_code == 201, r.text


def b64_reads(sim: AllTokenSim) -> dict[str, int]:
    return dict(sim.stats.b64_deliveries)


async def test_image_is_uploaded_from_disk_and_read_once(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    await alice.send("/alltoken-image a lighthouse at dusk --size=1024x1024")
    assert await bot.jobs.wait_idle(10)
    [upload] = alice.conv.of("upload")
    assert upload.image_bytes and upload.image_bytes.startswith(PNG_MAGIC)
    image = upload.parts[0]
    assert isinstance(image, Image) and image.alt == "a lighthouse at dusk"
    assert Path(image.path).parent == bot.settings.images_dir
    assert not Path(image.path).exists()  # removed once delivered
    [(task_id, reads)] = b64_reads(sim).items()
    assert reads == 1
    [job] = await bot.store.jobs_for(alice.owner)
    assert job.status == "done" and job.state["task_id"] == task_id
    assert "Image ready" in alice.conv.events[-1].text


async def test_image_upload_failure_retries_from_disk_without_rereading(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    carol = Chat(bot, "carol")
    carol.conv.fail_uploads = 1
    await carol.give_key(sim.issue_key(5))
    await carol.send("/alltoken-image a red kite")
    assert await bot.jobs.wait_idle(10)
    assert len(carol.conv.of("upload")) == 1
    assert list(b64_reads(sim).values()) == [1]


async def test_image_failure_is_reported_with_code(alice: Chat, bot: TokenBot) -> None:
    await alice.send("/alltoken-image something forbidden [[fail]]")
    assert await bot.jobs.wait_idle(10)
    failures = [p for e in alice.conv.events for p in e.parts if isinstance(p, Failure)]
    assert failures and failures[-1].code == "upstream_content_violation"
    [job] = await bot.store.jobs_for(alice.owner)
    assert job.status == "failed"


async def test_a_job_is_audited_when_it_ends_with_its_outcome(alice: Chat, bot: TokenBot) -> None:
    """Bug 2: the audit row of an image says how the job ended, not that it was spawned."""
    await alice.send("/alltoken-image something forbidden [[fail]]")
    assert await bot.jobs.wait_idle(10)
    [failed] = await bot.store.jobs_for(alice.owner)
    await alice.send("/alltoken-image a calm sea")
    assert await bot.jobs.wait_idle(10)
    done = next(j for j in await bot.store.jobs_for(alice.owner) if j.id != failed.id)
    assert (failed.status, done.status) == ("failed", "done")
    rows = [
        (e.outcome, e.detail, e.request_id)
        for e in await bot.store.list_audit(alice.owner)
        if e.command == "image"
    ]
    assert ("failed", "upstream_content_violation", failed.state["task_id"]) in rows
    assert ("ok", None, done.state["task_id"]) in rows
    assert failed.state["task_id"] and done.state["task_id"]
    # Only the spawn rows (no request id) and the two ends: no success for the failed job.
    assert len([r for r in rows if r[2] is not None]) == 2


async def test_image_submit_402(bot: TokenBot, sim: AllTokenSim) -> None:
    dan = Chat(bot, "dan")
    await dan.give_key(sim.issue_key(0))
    await dan.send("/alltoken-image a boat")
    assert await bot.jobs.wait_idle(10)
    failures = [p for e in dan.conv.events for p in e.parts if isinstance(p, Failure)]
    assert failures[-1].code == "insufficient_balance"


async def test_duplicate_idempotency_key_continues_the_first_task(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    from bot.backends.alltoken.service import ImageRequest

    key = sim.issue_key(5)
    svc = bot.services.get(AllTokenService)
    first = await svc.submit_image(key, ImageRequest(prompt="x"), "same-key")
    second = await svc.submit_image(key, ImageRequest(prompt="x"), "same-key")
    assert first == second


async def test_second_read_gets_gone_message(bot: TokenBot, sim: AllTokenSim) -> None:
    sim.config.r2_copy = False
    from bot.backends.alltoken.failures import render_failure
    from bot.backends.alltoken.service import ImageRequest
    from bot.core.errors import BackendError

    key = sim.issue_key(5)
    svc = bot.services.get(AllTokenService)
    task = await svc.submit_image(key, ImageRequest(prompt="x"), "k1")
    while (await svc.poll_image(key, task)).status != "completed":
        await asyncio.sleep(0.05)
    try:
        await svc.poll_image(key, task)
    except BackendError as exc:
        assert exc.status == 410 and exc.code == "image_already_retrieved"
        assert "again" in (render_failure(exc).hint or "")
    else:
        raise AssertionError("second read should be 410")


async def test_video_link_with_expiry(alice: Chat, bot: TokenBot) -> None:
    await alice.send("/alltoken-video waves on a pier --duration=4 --ratio=9:16")
    assert await bot.jobs.wait_idle(10)
    links = [p for e in alice.conv.events for p in e.parts if isinstance(p, Link)]
    assert links and links[-1].expires_at is not None
    async with httpx.AsyncClient() as client:
        r = await client.get(links[-1].url)
        assert r.status_code == 200
    # while running, the progress message carried a Cancel button
    first = alice.conv.events[0]
    assert any(
        isinstance(p, Actions) and p.buttons[0].action_id == CANCEL_ACTION for p in first.parts
    )


async def test_video_cancel_by_owner_and_refused_for_others(
    bot: TokenBot, sim: AllTokenSim
) -> None:
    sim.config.video_seconds = 30
    erin = Chat(bot, "erin")
    await erin.give_key(sim.issue_key(5))
    await erin.send("/alltoken-video slow sunrise")
    await erin.conv.wait_for(lambda c: bool(c.events))
    [job] = await bot.store.jobs_for(erin.owner)
    for _ in range(100):
        job = await bot.store.get_job(job.id)  # type: ignore[assignment]
        if job and job.state.get("task_id"):
            break
        await asyncio.sleep(0.05)
    mallory = Chat(bot, "mallory")
    await bot.handle_action(mallory.inbound("click"), CANCEL_ACTION, job.id, mallory.conv)
    assert "Only the person" in mallory.conv.of("whisper")[0].text
    assert (await bot.store.get_job(job.id)).status == "running"  # type: ignore[union-attr]
    await bot.handle_action(erin.inbound("click"), CANCEL_ACTION, job.id, erin.conv)
    assert (await bot.store.get_job(job.id)).status == "cancelled"  # type: ignore[union-attr]
    assert "cancelled" in erin.conv.events[-1].text.lower()
    key = await bot.store.get_credential(erin.owner, "alltoken")
    status = await bot.services.get(AllTokenService).poll_video(key, job.state["task_id"])  # type: ignore[arg-type]
    assert status.status == "cancelled"
    assert await bot.jobs.wait_idle(5)
    ends = [e for e in await bot.store.list_audit(erin.owner) if e.command == "video"]
    assert ("cancelled", job.state["task_id"]) in [(e.outcome, e.request_id) for e in ends]


async def test_video_validation_errors_are_usage_errors(alice: Chat) -> None:
    await alice.send("/alltoken-video a cat --duration=99")
    assert "4-12" in alice.conv.of("whisper")[0].text


async def _restarted_bot(
    tmp_path: Path, sim: AllTokenSim
) -> tuple[TokenBot, dict[str, RecordingConversation]]:
    b = await TokenBot.create(make_settings(tmp_path / "data", sim))
    convs: dict[str, RecordingConversation] = {}
    b.register_platform(
        "console", lambda d: convs.setdefault(d.conversation_key, RecordingConversation(d))
    )
    b.test_conversations = convs  # type: ignore[attr-defined]
    return b, convs


async def _wait_state(bot: TokenBot, job_id: str, key: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while True:
            job = await bot.store.get_job(job_id)
            if job and job.state.get(key):
                return
            await asyncio.sleep(0.01)


async def test_restart_mid_image_and_mid_video_delivers_each_once(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    sim.config.image_seconds = 1.0
    sim.config.video_seconds = 1.0
    bot1, _convs1 = await _restarted_bot(tmp_path, sim)
    chat1 = Chat(bot1, "alice")
    await chat1.give_key(sim.issue_key(10))
    await chat1.send("/alltoken-image a lighthouse")
    await chat1.send("/alltoken-video a pier")
    jobs = await bot1.store.jobs_for(chat1.owner)
    for job in jobs:
        await _wait_state(bot1, job.id, "task_id")
    await bot1.aclose()  # the process stops mid-flight
    assert not chat1.conv.of("upload")

    bot2, convs2 = await _restarted_bot(tmp_path, sim)
    try:
        assert await bot2.start() == 2
        assert await bot2.jobs.wait_idle(15)
        [conv] = convs2.values()
        assert len(conv.of("upload")) == 1
        links = [p for e in conv.events for p in e.parts if isinstance(p, Link)]
        assert len(links) == 1
        assert list(b64_reads(sim).values()) == [1]
        assert all(j.status == "done" for j in await bot2.store.jobs_for(chat1.owner))
        assert await bot2.start() == 0  # nothing left to resume
    finally:
        await bot2.aclose()


async def test_restart_after_bytes_saved_delivers_from_disk(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    bot1, _ = await _restarted_bot(tmp_path, sim)
    chat1 = Chat(bot1, "alice")
    chat1.conv.fail_uploads = 100  # the platform refuses uploads until the restart
    await chat1.give_key(sim.issue_key(10))
    await chat1.send("/alltoken-image a lighthouse")
    [job] = await bot1.store.jobs_for(chat1.owner)
    await _wait_state(bot1, job.id, "file")
    await bot1.aclose()
    assert (
        Path(str((await _job_state(tmp_path, sim, job.id))["file"]))
        .read_bytes()
        .startswith(PNG_MAGIC)
    )

    bot2, convs2 = await _restarted_bot(tmp_path, sim)
    try:
        await bot2.start()
        assert await bot2.jobs.wait_idle(10)
        [conv] = convs2.values()
        assert len(conv.of("upload")) == 1
        assert list(b64_reads(sim).values()) == [1]
    finally:
        await bot2.aclose()


async def _job_state(tmp_path: Path, sim: AllTokenSim, job_id: str) -> dict[str, object]:
    b, _ = await _restarted_bot(tmp_path, sim)
    try:
        job = await b.store.get_job(job_id)
        assert job is not None
        return job.state
    finally:
        await b.aclose()


async def test_destination_survives_serialisation() -> None:
    d = Destination(
        platform="slack",
        workspace="T1",
        channel="C1",
        user="U1",
        thread="1.2",
        extras={"response_url": "http://x"},
    )
    assert Destination.model_validate(d.model_dump(mode="json")) == d


async def test_video_failure_and_402_are_reported(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    await alice.send("/alltoken-video a forbidden scene [[fail]]")
    assert await bot.jobs.wait_idle(10)
    failures = [p for e in alice.conv.events for p in e.parts if isinstance(p, Failure)]
    assert failures and failures[-1].request_id and failures[-1].request_id.startswith("vgen_")
    broke = Chat(bot, "broke")
    await broke.give_key(sim.issue_key(0))
    await broke.send("/alltoken-video a calm lake")
    assert await bot.jobs.wait_idle(10)
    failures = [p for e in broke.conv.events for p in e.parts if isinstance(p, Failure)]
    assert failures[-1].code == "insufficient_balance"


async def test_image_polls_honour_next_poll_after(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    sim.config.image_seconds = 1.0
    sim.config.poll_after_ms = 400
    await alice.send("/alltoken-image a slow one")
    assert await bot.jobs.wait_idle(10)
    polls = sim.stats.requests_to("GET", "/v1/images/generations/{id}")
    assert 2 <= polls <= 5  # ~1 s / 0.4 s, not a tight loop


async def test_transient_poll_errors_back_off_and_recover(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    await add_fault(
        sim,
        method="GET",
        path="/v1/images/generations/",
        status=503,
        code="service_unavailable",
        times=2,
    )
    await alice.send("/alltoken-image resilient")
    assert await bot.jobs.wait_idle(15)
    assert len(alice.conv.of("upload")) == 1


async def test_top_level_request_id_reaches_the_user(alice: Chat, sim: AllTokenSim) -> None:
    await add_fault(
        sim,
        method="POST",
        path="/v1/chat/completions",
        status=400,
        code="invalid_request",
        mode="top_level_request_id",
        times=1,
    )
    await alice.send("/alltoken-chat hello")
    failures = [p for e in alice.conv.events for p in e.parts if isinstance(p, Failure)]
    assert failures[-1].request_id


async def test_cancel_clicked_while_the_submit_is_in_flight_cancels_at_alltoken(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    sim.config.video_seconds = 30
    await add_fault(sim, method="POST", path="/v1/videos/generations", latency_ms=800, times=1)
    await alice.send("/alltoken-video a slow start")
    [job] = await bot.store.jobs_for(alice.owner)
    await _wait_state(bot, job.id, "submit_started")
    await bot.handle_action(alice.inbound("click"), CANCEL_ACTION, job.id, alice.conv)
    assert "as soon as" in alice.conv.of("whisper")[-1].text
    assert await bot.jobs.wait_idle(10)
    job = await bot.store.get_job(job.id)  # type: ignore[assignment]
    assert job is not None and job.status == "cancelled"
    key = await bot.store.get_credential(alice.owner, "alltoken")
    status = await bot.services.get(AllTokenService).poll_video(key or "", job.state["task_id"])
    assert status.status == "cancelled"


async def test_a_video_stopped_mid_submit_keeps_its_task_id_and_resumes_it(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    # Its leases lapsed while the (paid, not resendable) submit was on the wire: the stop
    # waits for AllToken's answer and the id is saved, so the job resumes the same video
    # instead of ending as "submit interrupted, it may or may not be running".
    await add_fault(sim, method="POST", path="/v1/videos/generations", latency_ms=600, times=1)
    await alice.send("/alltoken-video a slow start")
    [job] = await bot.store.jobs_for(alice.owner)
    await _wait_state(bot, job.id, "submit_started")
    bot.jobs.stop_all_local()
    await asyncio.gather(*bot.jobs._tasks.values(), return_exceptions=True)
    stopped = await bot.store.get_job(job.id)
    assert stopped is not None and stopped.status == "running" and stopped.state["task_id"]
    assert await bot.jobs.renew_and_take_over() == 1  # its own row, claimed again
    assert await bot.jobs.wait_idle(10)
    done = await bot.store.get_job(job.id)
    assert done is not None and done.status == "done", done
    assert sim.stats.video_submissions == 1
    assert not [p for e in alice.conv.events for p in e.parts if isinstance(p, Failure)]


async def test_a_taken_over_image_read_by_the_last_holder_waits_for_its_copy_in_the_store(
    tmp_path: Path, sim: AllTokenSim
) -> None:
    # The replica that held the job read the image (AllToken hands it out once) and its lease
    # ran out before it kept the bytes; the next holder's poll answers 410 and must wait for
    # the first holder's copy in the store instead of telling the user the image is gone.
    sim.config.r2_copy = False
    sim.config.image_seconds = 0.5
    bot1, _ = await _restarted_bot(tmp_path, sim)
    chat1 = Chat(bot1, "alice")
    key = sim.issue_key(10)
    await chat1.give_key(key)
    await chat1.send("/alltoken-image a lighthouse")
    [job] = await bot1.store.jobs_for(chat1.owner)
    await _wait_state(bot1, job.id, "task_id")
    task_id = str((await bot1.store.get_job(job.id)).state["task_id"])  # type: ignore[union-attr]
    await bot1.aclose()

    bot2, convs2 = await _restarted_bot(tmp_path, sim)
    try:
        # The first holder's read, standing in for the replica that lost the job.
        svc = bot2.services.get(AllTokenService)
        while (status := await svc.poll_image(key, task_id)).status != "completed":
            await asyncio.sleep(0.05)
        image = base64.b64decode(status.data[0].b64_json or "")
        assert image.startswith(PNG_MAGIC)
        await bot2.start()

        async def first_holder_keeps_the_bytes() -> None:
            await asyncio.sleep(1.0)  # after bot2's poll has met the 410
            await bot2.store.keep_job_media(job.id, JobMedia(mime="image/png", data=image))

        keeper = asyncio.create_task(first_holder_keeps_the_bytes())
        assert await bot2.jobs.wait_idle(15)
        await keeper
        [conv] = convs2.values()
        [upload] = conv.of("upload")
        assert [p for p in upload.parts if isinstance(p, Image)]
        assert b64_reads(sim) == {task_id: 1}  # read once, by the first holder
        assert not [p for e in conv.events for p in e.parts if isinstance(p, Failure)]
        assert (await bot2.store.get_job(job.id)).status == "done"  # type: ignore[union-attr]
        assert sim.stats.errors[(410, "image_already_retrieved")] >= 1  # met, and survived
    finally:
        await bot2.aclose()


async def test_a_video_stopped_while_its_link_is_posted_is_delivered_once(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    # Its leases lapsed while the "ready" message was on the wire: the stop waits for the
    # platform's answer and the row is marked done, so the job claimed again posts nothing.
    # (Stopped between the message and "done", the resumed job would post the link again.)
    sim.config.video_seconds = 0.3
    alice.conv.hold_messages("Video ready")
    await alice.send("/alltoken-video a pier at noon")
    await stop_jobs_while_posting(alice.conv, "Video ready", bot.jobs)
    [job] = await bot.store.jobs_for(alice.owner)
    assert job.status == "done", job
    assert await bot.jobs.renew_and_take_over() == 0
    assert await bot.jobs.wait_idle(10)
    assert alice.conv.text().count("Video ready") == 1
    ends = [e.outcome for e in await bot.store.list_audit(alice.owner) if e.command == "video"]
    assert sorted(ends) == ["ok", "started"]  # its end audited, though the task was stopped


async def test_a_progress_message_stopped_mid_post_is_kept_and_edited_on_resume(
    alice: Chat, bot: TokenBot, sim: AllTokenSim
) -> None:
    # Stopped while its first message was on the wire, the job still saves that message's
    # ref, so where it resumes it edits that message instead of posting a second one.
    sim.config.video_seconds = 0.3
    alice.conv.hold_messages("Video queued")
    await alice.send("/alltoken-video a pier at dusk")
    await stop_jobs_while_posting(alice.conv, "Video queued", bot.jobs)
    assert await bot.jobs.renew_and_take_over() == 1  # its own row, claimed again
    assert await bot.jobs.wait_idle(10)
    [job] = await bot.store.jobs_for(alice.owner)
    assert job.status == "done", job
    [said] = alice.conv.of("say")
    assert {e.ref for e in alice.conv.of("edit")} == {said.ref}
    assert alice.conv.text().count("Video ready") == 1
