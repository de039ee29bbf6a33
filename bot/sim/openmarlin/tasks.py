"""The OpenMarlin simulator's long tasks (video only), charged up front, and their artifacts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.sim.demo_video import demo_mp4
from bot.sim.openmarlin.base import KEY, OpenMarlinSimBase
from bot.sim.openmarlin.world import (
    FAIL_MARKER,
    TASK_ASPECT_RATIOS,
    ApiError,
    Task,
    UsageRow,
    echoed_metadata,
    new_id,
)
from bot.sim.png import gradient_png

_TASK_FORBIDDEN = ("instruction", "provider_id", "labels", "model", "stream")


def _checked_input(body: dict[str, Any]) -> dict[str, Any]:
    """The task's `input`, or the 400/404 the server answers for a malformed request."""
    bad = [k for k in _TASK_FORBIDDEN if k in body]
    if bad:
        raise ApiError(400, "invalid_request", f"tasks do not accept {', '.join(bad)}")
    if body.get("kind") != "video":
        raise ApiError(400, "invalid_request", "kind must be video")
    inp = body.get("input")
    if (
        not isinstance(inp, dict)
        or not isinstance(inp.get("prompt"), str)
        or not inp["prompt"].strip()
    ):
        raise ApiError(400, "invalid_request", "input.prompt is required")
    duration = inp.get("duration_ms")
    if duration is not None and (not isinstance(duration, int) or not 1000 <= duration <= 20000):
        raise ApiError(400, "invalid_request", "input.duration_ms must be 1000-20000")
    ratio = inp.get("aspect_ratio")
    if ratio is not None and ratio not in TASK_ASPECT_RATIOS:
        raise ApiError(
            404, "task_executor_not_found", f"no task executor renders aspect ratio {ratio}"
        )
    return dict(inp)


class TaskRoutes(OpenMarlinSimBase):
    """`/v1/tasks*` (queued → running → succeeded/failed) and `/_media/tasks/*`."""

    async def submit_task(self, request: web.Request) -> web.Response:
        """POST /v1/tasks: video only, no routing fields, charged up front."""
        body = await self._body(request)
        inp = _checked_input(body)
        meta = echoed_metadata(body)
        if not any(p.connected and "video" in p.kinds for p in self.providers):
            raise ApiError(404, "task_executor_not_found", "no video executor is connected")
        ws = self._ws(request)
        cost = self.config.task_cost
        ws.require(cost)
        now = self.now()
        started = now + self.config.task_queue_s
        task = Task(
            new_id("task_"),
            ws.workspace_id,
            inp["prompt"],
            now,
            started,
            started + self.config.task_run_s,
            cost,
            inp,
            meta,  # echoed exactly as sent: the server adds nothing of its own
            fail=FAIL_MARKER in inp["prompt"],
        )
        self._tasks[task.task_id] = task
        ws.post(now, "usage_debit", -cost, task.task_id)
        return web.json_response(task.body(now, self.base_url), status=202)

    def _task(self, request: web.Request) -> Task:
        task = self._tasks.get(request.match_info["id"])
        if task is None or task.workspace_id != request[KEY].workspace_id:
            raise ApiError(404, "not_found", "no such task in this workspace")
        now = self.now()
        if not task.settled and task.status(now) in ("succeeded", "failed"):
            task.settled = True
            ws = self._workspaces[task.workspace_id]
            if task.fail:
                ws.post(now, "refund", task.cost, task.task_id)
            status = "refunded" if task.fail else "settled"
            settled = Decimal(0) if task.fail else task.cost
            ms = task.input.get("duration_ms", 5000)
            seconds = ms // 1000 if ms % 1000 == 0 else ms / 1000  # a bare number of seconds
            ws.usage.append(
                UsageRow(now, "video", status, task.provider_id, task.task_id, seconds, settled)
            )
        return task

    async def get_task(self, request: web.Request) -> web.Response:
        """GET /v1/tasks/:id."""
        return web.json_response(self._task(request).body(self.now(), self.base_url))

    async def media(self, request: web.Request) -> web.Response:
        """GET /_media/tasks/{id}.mp4|png: the artifact of a finished task."""
        task = self._tasks.get(request.match_info["id"])
        if task is None or task.status(self.now()) != "succeeded":
            raise ApiError(404, "not_found", "no such artifact")
        if request.match_info["ext"] == "png":
            return web.Response(body=gradient_png(task.prompt, 32), content_type="image/png")
        return web.Response(body=demo_mp4(), content_type="video/mp4")
