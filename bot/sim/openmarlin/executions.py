"""The OpenMarlin simulator's models and executions: routing, balance, JSON or SSE answers."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.sim.faults import cut_connection
from bot.sim.openmarlin.base import DROP_STREAM, OpenMarlinSimBase
from bot.sim.openmarlin.world import (
    FAIL_MARKER,
    KNOWN_AGENTS,
    ApiError,
    UsageRow,
    Workspace,
    check_labels,
    compose_answer,
    echoed_metadata,
    route,
)
from bot.sim.serving import open_event_stream, request_id


@dataclass(frozen=True)
class _Run:
    """One accepted execution: its route, its answer and what the caller sent as metadata."""

    provider_id: str
    model: str
    answer: str
    metadata: dict[str, Any] | None
    cost: Decimal
    failing: bool

    def echo(self) -> dict[str, Any]:
        """`metadata` only when the caller sent some, and then exactly that (nothing added)."""
        return {} if self.metadata is None else {"metadata": self.metadata}


class ExecutionRoutes(OpenMarlinSimBase):
    """`GET /v1/models` and `POST /v1/executions`."""

    async def list_models(self, request: web.Request) -> web.Response:
        """GET /v1/models: every model a connected provider advertises, with its providers."""
        out: dict[str, list[dict[str, Any]]] = {}
        for p in self.providers:
            if not p.connected:
                continue
            for model in p.models:
                out.setdefault(model, []).append(
                    {
                        "provider_id": p.provider_id,
                        "model_providers": list(p.model_providers.get(model, ())),
                        "labels": dict(p.labels),
                    }
                )
        data = [{"id": m, "providers": providers} for m, providers in sorted(out.items())]
        return web.json_response({"object": "list", "data": data})

    async def executions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/executions: route, check the balance, answer as JSON or SSE."""
        body = await self._body(request)
        instruction = body.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ApiError(400, "invalid_request", "instruction is required")
        if body.get("kind", "agent_run") != "agent_run":
            raise ApiError(400, "invalid_request", "kind must be agent_run")
        model = body.get("model")
        if model is not None and (not isinstance(model, str) or "/" not in model):
            raise ApiError(400, "invalid_request", "model must be an exact ref like vendor/model")
        provider_id = body.get("provider_id")
        if provider_id is not None and not isinstance(provider_id, str):
            raise ApiError(400, "invalid_request", "provider_id must be a string")
        labels = check_labels(body.get("labels"))
        metadata = echoed_metadata(body)
        agent = body.get("agent_id")
        if agent is not None and agent not in KNOWN_AGENTS:
            raise ApiError(404, "skill_not_available", f"no agent {agent!r} in this workspace")
        provider, chosen_model = route(
            self.providers, model=model, provider_id=provider_id, labels=labels
        )
        ws = self._ws(request)
        cost = self.config.execution_cost
        ws.require(cost)
        rid = request_id(request)
        answer = compose_answer(instruction, chosen_model, provider.provider_id)
        failing = FAIL_MARKER in instruction
        self.execution_count += 1
        run = _Run(provider.provider_id, chosen_model, answer, metadata, cost, failing)
        if body.get("stream") and self.config.stream:
            return await self._stream(request, ws, run)
        if failing:
            raise ApiError(502, "execution_failed", "the agent run failed on the provider")
        self._settle(ws, provider.provider_id, rid, "agent_run", cost, len(answer.split()))
        return web.json_response({"request_id": rid, "output": answer, **run.echo()})

    def _settle(
        self, ws: Workspace, provider_id: str, rid: str, capability: str, cost: Decimal, units: int
    ) -> None:
        now = self.now()
        ws.post(now, "usage_debit", -cost, rid)
        ws.usage.append(UsageRow(now, capability, "settled", provider_id, rid, units, cost))

    async def _stream(self, request: web.Request, ws: Workspace, run: _Run) -> web.StreamResponse:
        rid = request_id(request)
        resp = await open_event_stream(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())

        await send(
            "execution.start",
            {"request_id": rid, "provider_id": run.provider_id, "model": run.model},
        )
        words = run.answer.split(" ")
        delay = 1 / self.config.tokens_per_second if self.config.tokens_per_second else 0.0
        for i, word in enumerate(words):
            if request.get(DROP_STREAM) and i == 3:
                cut_connection(request)
                return resp
            if run.failing and i == 3:
                await send(
                    "execution.error",
                    {
                        "error": "execution_failed",
                        "message": "the agent run failed on the provider",
                        "request_id": rid,
                    },
                )
                await resp.write_eof()
                return resp
            await send("execution.chunk", {"delta": word if i == 0 else " " + word})
            if delay:
                await asyncio.sleep(delay)
        self._settle(ws, run.provider_id, rid, "agent_run", run.cost, len(words))
        await send("execution.end", {"request_id": rid, "output": run.answer, **run.echo()})
        await resp.write_eof()
        return resp
