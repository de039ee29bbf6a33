"""The OpenMarlin simulator's `GET /openapi.json`: a minimal OpenAPI document of its API routes.

The skill's scripts use `GET {server}/openapi.json` as their connectivity check (any 2xx is
"reachable"), so the real server publishes one. This one is written from the app's own router,
so it lists exactly the `/v1/*` routes the simulator serves, and needs no key.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

OPENAPI_PATH = "/openapi.json"

# Summary and success status per operation; a route missing here still appears (generic, 200).
_OPERATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("POST", "/v1/registration/sessions"): ("Start a registration session", "201"),
    ("GET", "/v1/registration/sessions/{id}"): ("Read a registration session", "200"),
    ("POST", "/v1/registration/sessions/{id}/api-keys"): (
        "Issue the first workspace API key",
        "201",
    ),
    ("GET", "/v1/models"): ("Exact model refs with their providers and labels", "200"),
    ("POST", "/v1/executions"): ("Run an execution (JSON or Server-Sent Events)", "200"),
    ("POST", "/v1/tasks"): ("Submit a long-running task", "202"),
    ("GET", "/v1/tasks/{id}"): ("Read a task", "200"),
    ("GET", "/v1/balance"): ("The workspace balance", "200"),
    ("GET", "/v1/usage-events"): ("Recent usage events", "200"),
    ("GET", "/v1/ledger"): ("Recent ledger entries", "200"),
    ("POST", "/v1/topup/sessions"): ("Start a top-up session", "201"),
    ("GET", "/v1/topup/sessions/{id}"): ("Read a top-up session", "200"),
}


def _operation(method: str, path: str) -> dict[str, Any]:
    public = path.startswith("/v1/registration/")
    summary, success = _OPERATIONS.get((method, path), (f"{method} {path}", "200"))
    responses: dict[str, Any] = {
        success: {"description": "Success"},
        "default": {"description": "An error: {error, message}"},
    }
    if not public:
        responses["401"] = {"description": "missing_api_key or invalid_api_key"}
    op: dict[str, Any] = {
        "operationId": f"{method.lower()}_{path.strip('/').replace('/', '_')}",
        "summary": summary,
        "security": [] if public else [{"workspaceKey": []}],
        "responses": responses,
    }
    params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
    if params:
        op["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in params
        ]
    return op


def openapi_document(app: web.Application, server_url: str) -> dict[str, Any]:
    """OpenAPI 3.1 for every `/v1/*` route of `app` (not the pages, media or `/_sim`)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if not path.startswith("/v1/") or route.method in ("HEAD", "*"):
            continue
        paths.setdefault(path, {})[route.method.lower()] = _operation(route.method, path)
    return {
        "openapi": "3.1.0",
        "info": {"title": "OpenMarlin API (tokenbot simulator)", "version": "sim"},
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {
                "workspaceKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A workspace API key, claw_wsk_…",
                }
            }
        },
        "paths": dict(sorted(paths.items())),
    }
