"""Real `tokenbot run` processes on one PostgreSQL, behind the fake Slack and fake Discord.

The simulators (AllToken, OpenMarlin, OpenClaw Token), the fake Slack and the fake Discord
run in the calling process, so their counters are read directly; every replica is a separate
`python -m bot run` subprocess with its own data dir, log file (`root/replica-<name>.log`) and
HTTP port, the same master key and database, Slack in HTTP mode (no app token) and its own
Discord shards of `options.shard_count`. The database is migrated with `tokenbot migrate`
before the block starts. Use it as::

    options = ClusterOptions(shard_count=2, lease_s=3, renew_s=1, pacing=Pacing(image_seconds=1))
    async with running_cluster(tmp_path, options=options, database_url=url) as cluster:
        # url=None: a pgserver PostgreSQL of its own (a benchmark outside pytest)
        await cluster.seed_keys(cluster.slack_owner("U1"), cluster.discord_owner(0, 0))
        await cluster.start_replicas(2)                    # r0: shard 0, r1: shard 1; ready
        await cluster.slack_command("/alltoken-chat", "hi", user="U1", channel="C1")  # round robin
        await cluster.slack_post("events_api", cluster.slack_mention("alltoken chat hi",
                                 user="U1", channel="C2"), replica="r1", retry_num=1)
        await cluster.discord_slash(0, "alltoken-chat", user=cluster.discord_user(0), prompt="hi")
        cluster.hold_long_jobs()     # images/videos/tasks submitted now stay unfinished …
        await cluster.kill("r0")     # SIGKILL; out of the Slack rotation at once
        await cluster.start_replica("r0b", shard_ids=(0,))  # takes shard 0 over
        cluster.release_long_jobs()  # … until released
        await cluster.terminate("r1")  # SIGTERM: a graceful stop, claims handed back; exit code
        rows = await cluster.wait_jobs_finished()  # job rows: id, kind, status, claimed_by, task_id

Read results from `cluster.slack` (FakeSlack), `cluster.discord` (FakeDiscord, one guild per
shard: `cluster.guilds[shard]`, spare channels from `discord_channel(shard)`),
`cluster.alltoken.stats`, `cluster.openmarlin`, `cluster.openclaw.stats`;
`tests.replicas.traffic.Traffic` sends commands one conversation each and counts their
results. On leaving the block every replica still running is stopped (SIGTERM, then
SIGKILL); if the block raised, the tail of every replica's log is printed to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from cryptography.fernet import Fernet
from pydantic import BaseModel, Field

from bot.sim.alltoken.server import AllTokenSim
from bot.sim.openclaw_token.server import DEMO_MGMT_KEY, OpenClawTokenSim
from bot.sim.openmarlin.server import OpenMarlinSim
from bot.store import UNFINISHED_STATUSES, Owner, SecretBox, Store
from tests import leaks
from tests.fakes import discord as fake_discord
from tests.fakes.discord import FakeDiscord, FakeInteraction
from tests.fakes.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    TEAM,
    FakeSlack,
    block_actions,
    encode,
    event_callback,
    mention_event,
    signed_headers,
    slash_command,
)
from tests.replicas.database import migrate, shared_database
from tests.replicas.replica import Replica
from tests.replicas.simulators import HOLD_S, Pacing, Simulators

__all__ = [
    "HOLD_S",
    "LONG_JOB_KINDS",
    "Cluster",
    "ClusterOptions",
    "Pacing",
    "Replica",
    "SlackDelivery",
    "running_cluster",
]

ROOT = Path(__file__).resolve().parents[2]

# The kinds of job rows of images, videos and OpenMarlin tasks.
LONG_JOB_KINDS = frozenset({"image", "video", "openmarlin.task"})
_PORT_LINE = re.compile(r"health and metrics on port (\d+)")
# Inherited settings that would change what a replica does: every replica gets only ours.
_OWN_PREFIXES = ("TOKENBOT_", "SLACK_", "DISCORD_", "ALLTOKEN_", "OPENMARLIN_", "OPENCLAW_")


class ClusterOptions(BaseModel):
    """Shards, leases and simulator pacing for one cluster."""

    shard_count: int = Field(2, ge=1)
    # Text channels made in each shard's guild before any replica connects (Discord sends a
    # guild's channels in GUILD_CREATE): one per command lets a test count replies per command.
    discord_channels_per_shard: int = Field(0, ge=0)
    lease_s: float = Field(3.0, gt=0)
    renew_s: float = Field(1.0, gt=0)
    pacing: Pacing = Field(default_factory=Pacing)
    ready_timeout_s: float = Field(90.0, gt=0)
    stop_timeout_s: float = Field(30.0, gt=0)
    log_level: str = "INFO"
    extra_env: dict[str, str] = Field(default_factory=dict)


@dataclass
class SlackDelivery:
    """What one signed request to /slack/events got back, and from which replica."""

    status: int
    body: str
    replica: str
    seconds: float


@dataclass
class Cluster:
    """The running simulators and fakes, the shared database, and the replicas."""

    root: Path
    options: ClusterOptions
    database_url: str
    master_key: str
    sims: Simulators
    slack: FakeSlack
    discord: FakeDiscord
    # shard -> (its guild, that guild's default channel)
    guilds: dict[int, tuple[int, int]] = field(default_factory=dict)
    replicas: dict[str, Replica] = field(default_factory=dict)
    _spare_channels: dict[int, list[int]] = field(default_factory=dict)
    _rotation: itertools.count[int] = field(default_factory=itertools.count)
    _http: aiohttp.ClientSession | None = None

    @property
    def alltoken(self) -> AllTokenSim:
        """The AllToken simulator (its `stats` count requests per route)."""
        return self.sims.alltoken

    @property
    def openmarlin(self) -> OpenMarlinSim:
        """The OpenMarlin simulator."""
        return self.sims.openmarlin

    @property
    def openclaw(self) -> OpenClawTokenSim:
        """The OpenClaw Token simulator (`stats["purchases"]`)."""
        return self.sims.openclaw

    # --- replicas ------------------------------------------------------------------------

    def env(self, name: str, shard_ids: Sequence[int], data_dir: Path) -> dict[str, str]:
        """The environment of replica `name` (no shards: Slack only, no Discord at all)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
        o = self.options
        discord = {
            "DISCORD_TOKEN": fake_discord.BOT_TOKEN,
            "DISCORD_API_URL": self.discord.api_url,
            "DISCORD_GATEWAY_URL": self.discord.gateway_url,
            "DISCORD_SHARD_IDS": ",".join(str(s) for s in shard_ids),
            "DISCORD_SHARD_COUNT": str(o.shard_count),
        }
        return {
            **base,
            "PYTHONUNBUFFERED": "1",
            "TOKENBOT_DATABASE_URL": self.database_url,
            "TOKENBOT_MASTER_KEY": self.master_key,
            "TOKENBOT_DATA_DIR": str(data_dir),
            "TOKENBOT_REPLICA_ID": name,
            "TOKENBOT_HTTP_HOST": "127.0.0.1",
            "TOKENBOT_HTTP_PORT": "0",  # the log says which port it got
            "TOKENBOT_LOG_LEVEL": o.log_level,
            "TOKENBOT_HTTP_TIMEOUT": "20",
            "TOKENBOT_MAX_POLLS_PER_SECOND": "1000",
            "TOKENBOT_JOB_LEASE_SECONDS": str(o.lease_s),
            "TOKENBOT_JOB_LEASE_RENEW_SECONDS": str(o.renew_s),
            "ALLTOKEN_BASE_URL": self.alltoken.base_url,
            "OPENMARLIN_SERVER_URL": self.openmarlin.base_url,
            "OPENCLAW_TOKEN_API_BASE": self.openclaw.api_base,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": self.slack.api_url,
            **(discord if shard_ids else {}),
            **o.extra_env,
        }

    async def start_replica(
        self,
        name: str,
        shard_ids: Sequence[int] = (),
        *,
        env: dict[str, str] | None = None,
        argv: Sequence[str] = ("-m", "bot", "run"),
    ) -> Replica:
        """Start `tokenbot run` (or `python *argv`, a stand-in that prints the same port line)
        as replica `name` holding `shard_ids` (none: no Discord); returns once it is ready.

        Ready: /readyz answers 200 and the fake Discord has a connection for each of its shards.
        It joins the Slack rotation (round robin) at once.
        """
        if name in self.replicas:
            raise ValueError(f"replica {name!r} exists already")
        data_dir = self.root / "replicas" / name
        data_dir.mkdir(parents=True)
        # A shard another replica holds now is ready once *this* replica's connection has it.
        earlier = {s: ws for s, ws in self.discord.shard_ws.items() if s in shard_ids}
        log_path = self.root / f"replica-{name}.log"
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                *argv,
                cwd=ROOT,
                env={**self.env(name, shard_ids, data_dir), **(env or {})},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
        replica = Replica(name, tuple(shard_ids), data_dir, log_path, process)
        self.replicas[name] = replica
        await self._wait_ready(replica, earlier)
        return replica

    async def start_replicas(self, count: int, prefix: str = "r") -> list[Replica]:
        """`count` replicas at once, the shards dealt out round robin (r0 gets 0, count, …)."""
        shards = [
            tuple(s for s in range(self.options.shard_count) if s % count == i)
            for i in range(count)
        ]
        return list(
            await asyncio.gather(
                *(self.start_replica(f"{prefix}{i}", shards[i]) for i in range(count))
            )
        )

    async def _wait_ready(self, replica: Replica, earlier: dict[int, Any]) -> None:
        deadline = time.monotonic() + self.options.ready_timeout_s
        while replica.port is None:
            self._check_running(replica)
            found = _PORT_LINE.search(replica.log())
            if found:
                replica.port = int(found.group(1))
                break
            await _pause(deadline, f"{replica.name} to listen")
        while not await self._ready(replica):
            self._check_running(replica)
            await _pause(deadline, f"{replica.name}'s /readyz")
        shard_ws = self.discord.shard_ws

        def connected() -> bool:
            self._check_running(replica)
            return all(
                s in shard_ws and not shard_ws[s].closed and shard_ws[s] is not earlier.get(s)
                for s in replica.shard_ids
            )

        await self.discord.wait_until(
            connected, max(deadline - time.monotonic(), 1.0), what=f"{replica.name}'s shards"
        )

    @staticmethod
    def _check_running(replica: Replica) -> None:
        if not replica.alive:
            raise RuntimeError(
                f"replica {replica.name} exited with {replica.process.returncode}:\n"
                + replica.tail()
            )

    async def _ready(self, replica: Replica) -> bool:
        try:
            async with self.http.get(f"{replica.url}/readyz") as resp:
                return resp.status == 200
        except aiohttp.ClientError:
            return False

    async def kill(self, name: str) -> None:
        """SIGKILL a replica (no clean-up at all) and wait until it is gone."""
        replica = self.replicas[name]
        replica.stopped = True
        if replica.alive:
            replica.process.send_signal(signal.SIGKILL)
        await replica.process.wait()

    async def terminate(self, name: str, timeout: float | None = None) -> int:
        """SIGTERM a replica (graceful: it hands its job claims back) and wait for its exit code."""
        replica = self.replicas[name]
        replica.stopped = True
        if replica.alive:
            replica.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(
            replica.process.wait(), timeout or self.options.stop_timeout_s
        )

    def live(self) -> list[Replica]:
        """The replicas still running, in start order."""
        return [r for r in self.replicas.values() if r.alive and r.port is not None]

    def unexpected_exits(self) -> list[str]:
        """Replicas that exited without being told to."""
        return [r.name for r in self.replicas.values() if not r.alive and not r.stopped]

    def log_tails(self, lines: int = 40) -> str:
        """The end of every replica's log, for a failure report."""
        return "\n".join(
            f"--- replica {r.name} (exit {r.process.returncode}) {r.log_path}\n{r.tail(lines)}"
            for r in self.replicas.values()
        )

    # --- the store -----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def store(self) -> AsyncIterator[Store]:
        """The shared store, opened in this process (to seed keys or read jobs)."""
        box = SecretBox.from_settings(self.master_key, self.root)
        store = await Store.open(self.database_url, box, allow_new_store=True)
        try:
            yield store
        finally:
            await store.close()

    async def seed_keys(self, *owners: Owner, alltoken_usd: float = 100.0) -> None:
        """Store funded AllToken and OpenMarlin keys and the OpenClaw Token demo management key."""
        async with self.store() as store:
            for owner in owners:
                alltoken = self.alltoken.issue_key(alltoken_usd)
                openmarlin = self.openmarlin.issue_key(1000.0)
                leaks.secret(alltoken)
                leaks.secret(openmarlin)
                await store.put_credential(owner, "alltoken", alltoken)
                await store.put_credential(owner, "openmarlin", openmarlin)
                await store.put_credential(owner, "openclaw_token", DEMO_MGMT_KEY)

    async def jobs(self) -> list[dict[str, Any]]:
        """Every job row: id, kind, status, claimed_by and its saved backend `task_id` (or None)."""
        import asyncpg

        conn = await asyncpg.connect(self.database_url, timeout=30)
        try:
            rows = await conn.fetch("SELECT id, kind, status, claimed_by, state FROM jobs")
        finally:
            await conn.close()
        return [
            {**{k: r[k] for k in ("id", "kind", "status", "claimed_by")},
             "task_id": json.loads(r["state"] or "{}").get("task_id")}
            for r in rows
        ]  # fmt: skip

    async def wait_jobs_finished(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        """Wait until no job row is pending, running or delivering; returns every row."""
        deadline = time.monotonic() + timeout
        while True:
            rows = await self.jobs()
            if all(r["status"] not in UNFINISHED_STATUSES for r in rows):
                return rows
            left = [r for r in rows if r["status"] in UNFINISHED_STATUSES]
            await _pause(deadline, f"jobs to finish: {left}", 0.25)

    # --- long jobs held in the simulators ------------------------------------------------

    def hold_long_jobs(self) -> None:
        """Images, videos and OpenMarlin tasks submitted from now on stay unfinished until
        `release_long_jobs`: a test kills or stops a replica while they are surely in flight."""
        self.sims.hold()

    def release_long_jobs(self, after_s: float = 0.3) -> int:
        """Let every held job finish `after_s` from now; returns how many were released."""
        return self.sims.release(after_s)

    def long_jobs_submitted(self) -> int:
        """Images, videos and OpenMarlin tasks the simulators accepted so far."""
        return self.sims.long_jobs_submitted()

    async def wait_long_jobs_in_flight(
        self, count: int, timeout: float = 120.0
    ) -> list[dict[str, Any]]:
        """Wait until `count` long jobs run with their backend task saved; returns their rows.

        Once saved, a replica taking a job over resumes that task instead of submitting anew.
        """
        deadline = time.monotonic() + timeout
        while True:
            rows = [r for r in await self.jobs() if r["kind"] in LONG_JOB_KINDS]
            saved = [r for r in rows if r["status"] == "running" and r["task_id"]]
            if len(saved) >= count and self.long_jobs_submitted() >= count:
                return rows
            await _pause(deadline, f"{count} long jobs in flight (saved: {len(saved)})", 0.25)

    # --- Slack, through a round-robin load balancer --------------------------------------

    @property
    def http(self) -> aiohttp.ClientSession:
        """The cluster's HTTP client (the load balancer's, and readiness checks)."""
        if self._http is None:
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=60)
            )
        return self._http

    @staticmethod
    def slack_owner(user: str) -> Owner:
        """Whose keys a Slack user's commands use."""
        return Owner(platform="slack", workspace=TEAM, user=user)

    def next_replica(self, *, other_than: str | None = None) -> Replica:
        """The next live replica in the rotation (skipping `other_than`)."""
        live = [r for r in self.live() if r.name != other_than]
        if not live:
            raise RuntimeError("no live replica to send to")
        return live[next(self._rotation) % len(live)]

    async def slack_post(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        replica: str | None = None,
        retry_num: int | None = None,
    ) -> SlackDelivery:
        """One signed request (`slash_commands`, `events_api`, `interactive`) to a replica.

        `replica` None: the next one in the rotation. A replica that cannot be reached (it
        was killed) leaves the rotation and the request goes to the next, marked as Slack's
        retry of a failed delivery.
        """
        target = self.replicas[replica] if replica else self.next_replica()
        body, ctype = encode(kind, payload)
        for _ in range(len(self.replicas) + 1):
            # Slack signs every retry anew, a second later at least: only the event id (or
            # the trigger) tells a retry from a new request, not a replayed signature.
            headers = signed_headers(body, ctype, timestamp=int(time.time()) + (retry_num or 0))
            if retry_num is not None:
                headers["X-Slack-Retry-Num"] = str(retry_num)
                headers["X-Slack-Retry-Reason"] = "http_timeout"
            began = time.perf_counter()
            try:
                async with self.http.post(target.events_url, data=body, headers=headers) as resp:
                    text = await resp.text()
                    return SlackDelivery(
                        resp.status, text, target.name, time.perf_counter() - began
                    )
            except aiohttp.ClientConnectionError:
                retry_num = (retry_num or 0) + 1
                target = self.next_replica(other_than=target.name)
        raise RuntimeError("no replica answered")

    async def slack_command(
        self, command: str, text: str = "", *, user: str, channel: str, **kw: Any
    ) -> SlackDelivery:
        """A slash command with a fresh response_url (`replica=` picks the target)."""
        replica = kw.pop("replica", None)
        payload = slash_command(
            command, text, user=user, channel=channel, response_url=self.slack.new_response_url()
        )
        return await self.slack_post("slash_commands", payload, replica=replica, **kw)

    def slack_mention(
        self, text: str, *, user: str, channel: str, event_id: str | None = None
    ) -> dict[str, Any]:
        """The Events API payload of an @mention (recorded in the fake); send it with `slack_post`."""
        event = mention_event(self.slack, channel, user, text)
        return event_callback(event, event_id=event_id or f"Ev{uuid.uuid4().hex[:12]}")

    async def slack_click(
        self, action_id: str, value: str, *, user: str, channel: str, replica: str | None = None
    ) -> SlackDelivery:
        """A button click (block_actions) with a fresh response_url."""
        payload = block_actions(
            action_id,
            value,
            user=user,
            channel=channel,
            message_ts=self.slack.next_ts(),
            response_url=self.slack.new_response_url(),
        )
        return await self.slack_post("interactive", payload, replica=replica)

    # --- Discord, one guild per shard ----------------------------------------------------

    def discord_user(self, k: int) -> dict[str, Any]:
        """The k-th Discord user."""
        return self.discord.burst_user(k)

    def discord_owner(self, shard: int, k: int) -> Owner:
        """Whose keys the k-th Discord user's commands use in the guild of `shard`."""
        guild, _ = self.guilds[shard]
        return Owner(platform="discord", workspace=str(guild), user=self.discord_user(k)["id"])

    def discord_channel(self, shard: int) -> int:
        """A channel of `shard`'s guild nobody used yet (see `discord_channels_per_shard`)."""
        spare = self._spare_channels.get(shard)
        if not spare:
            raise RuntimeError(f"no unused channel left in the guild of shard {shard}")
        return spare.pop(0)

    async def discord_slash(
        self,
        shard: int,
        name: str,
        /,
        *,
        user: dict[str, Any],
        channel_id: int | None = None,
        subcommand: str | None = None,
        **options: Any,
    ) -> FakeInteraction:
        """A slash command in the guild of `shard` (Discord sends it over that shard only)."""
        channel = channel_id or self.guilds[shard][1]
        return await self.discord.slash(
            name, user=user, channel_id=channel, subcommand=subcommand, **options
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop every replica still running (SIGTERM, then SIGKILL)."""
        for replica in self.replicas.values():
            if replica.alive:
                replica.stopped = True
                replica.process.send_signal(signal.SIGTERM)
        for replica in self.replicas.values():
            try:
                await asyncio.wait_for(replica.process.wait(), self.options.stop_timeout_s)
            except TimeoutError:
                replica.process.kill()
                await replica.process.wait()
        if self._http is not None:
            await self._http.close()


async def _pause(deadline: float, what: str, interval: float = 0.05) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"timed out waiting for {what}")
    await asyncio.sleep(interval)


@contextlib.asynccontextmanager
async def running_cluster(
    root: Path,
    *,
    options: ClusterOptions | None = None,
    database_url: str | None = None,
) -> AsyncIterator[Cluster]:
    """Simulators, fakes and a migrated database under `root`; replicas are started by the caller.

    `database_url` None starts a pgserver PostgreSQL for the cluster alone.
    """
    o = options or ClusterOptions()
    sims = Simulators.create(o.pacing)
    started: list[Any] = []
    async with shared_database(database_url) as url:
        try:
            await sims.start()
            started.append(sims)
            slack = await FakeSlack().start()
            started.append(slack)
            discord = FakeDiscord()
            cluster = Cluster(root, o, url, Fernet.generate_key().decode(), sims, slack, discord)
            for shard in range(o.shard_count):
                cluster.guilds[shard] = discord.add_guild(shard, o.shard_count)
                guild = cluster.guilds[shard][0]
                cluster._spare_channels[shard] = [
                    discord.add_channel(guild, f"c{i}") for i in range(o.discord_channels_per_shard)
                ]
            await discord.start()
            started.append(discord)
            env = cluster.env("migrate", (), root / "migrate")
            del env["TOKENBOT_MASTER_KEY"]  # migrate needs none, as in a deploy step
            await migrate(env, ROOT, o.ready_timeout_s)
            try:
                yield cluster
            except BaseException:
                print("\n" + cluster.log_tails(), file=sys.stderr)
                raise
            finally:
                await cluster.aclose()
        finally:
            for server in reversed(started):
                with contextlib.suppress(Exception):
                    await server.stop()
