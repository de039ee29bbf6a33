"""The cluster's three simulators, their pacing, and long jobs held unfinished on demand.

A held image, video or OpenMarlin task stays unfinished until it is released, so a test can
kill or stop a replica while its long jobs are surely in flight, whatever the machine's speed.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field

from bot.sim.alltoken.server import AllTokenSim, AllTokenSimConfig
from bot.sim.alltoken.tasks import ImageTask, VideoTask
from bot.sim.openclaw_token.server import OpenClawTokenSim
from bot.sim.openmarlin.config import OpenMarlinSimConfig
from bot.sim.openmarlin.server import OpenMarlinSim

# How long a held image, video or task would take: far longer than any test runs.
HOLD_S = 3600.0


class Pacing(BaseModel):
    """How long the simulators take (seconds), when nothing is held."""

    image_seconds: float = Field(0.3, ge=0)
    video_seconds: float = Field(0.5, ge=0)
    openmarlin_task_seconds: float = Field(1.0, ge=0)
    tokens_per_second: float = Field(0.0, ge=0)  # 0: a chat answers at once
    poll_after_ms: int = Field(100, ge=0)


@dataclass
class Simulators:
    """AllToken, OpenMarlin and OpenClaw Token, in this process."""

    pacing: Pacing
    alltoken: AllTokenSim
    openmarlin: OpenMarlinSim
    openclaw: OpenClawTokenSim

    @classmethod
    def create(cls, pacing: Pacing) -> Simulators:
        """The three simulators (not started yet)."""
        alltoken = AllTokenSim(
            AllTokenSimConfig(
                image_seconds=pacing.image_seconds,
                video_seconds=pacing.video_seconds,
                tokens_per_second=pacing.tokens_per_second,
                poll_after_ms=pacing.poll_after_ms,
                image_pixels=64,  # small pictures: cheap to draw, upload and scan for leaks
            )
        )
        openmarlin = OpenMarlinSim(
            OpenMarlinSimConfig(
                task_queue_s=pacing.openmarlin_task_seconds * 0.2,
                task_run_s=pacing.openmarlin_task_seconds * 0.8,
                tokens_per_second=pacing.tokens_per_second,
            )
        )
        return cls(pacing, alltoken, openmarlin, OpenClawTokenSim())

    def hold(self) -> None:
        """Images, videos and tasks submitted from now on stay unfinished until `release`."""
        self.alltoken.config.image_seconds = HOLD_S
        self.alltoken.config.video_seconds = HOLD_S
        self.openmarlin.config.task_queue_s = 0.0
        self.openmarlin.config.task_run_s = HOLD_S

    def release(self, after_s: float = 0.3) -> int:
        """Every unfinished image, video and task finishes `after_s` from now, new ones take
        the pacing's times again; returns how many were released."""
        p = self.pacing
        self.alltoken.config.image_seconds = p.image_seconds
        self.alltoken.config.video_seconds = p.video_seconds
        self.openmarlin.config.task_queue_s = p.openmarlin_task_seconds * 0.2
        self.openmarlin.config.task_run_s = p.openmarlin_task_seconds * 0.8
        released = 0
        now = self.alltoken.now()
        tasks: list[ImageTask | VideoTask] = [*self.alltoken._images.values()]
        tasks += self.alltoken._videos.values()
        for task in tasks:
            if task.ready_at > now + after_s:
                task.ready_at = now + after_s
                released += 1
        now = self.openmarlin.now()
        for om in self.openmarlin._tasks.values():
            if om.completed_at > now + after_s:
                om.started_at = min(om.started_at, now)
                om.completed_at = now + after_s
                released += 1
        return released

    def long_jobs_submitted(self) -> int:
        """Images, videos and OpenMarlin tasks the simulators accepted so far."""
        stats = self.alltoken.stats
        return stats.image_submissions + stats.video_submissions + len(self.openmarlin._tasks)

    async def start(self) -> None:
        """Listen on free loopback ports."""
        for sim in (self.alltoken, self.openmarlin, self.openclaw):
            await sim.start()

    async def stop(self) -> None:
        """Stop listening."""
        for sim in (self.openclaw, self.openmarlin, self.alltoken):
            await sim.stop()
