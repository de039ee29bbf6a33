"""The OpenClaw Token simulator's provisioned keys: create (value shown once), list, limits.

As the real server (src/routes/keys.ts): a list never flags revoked keys, a revoked key is
"not found" (404 KEY_NOT_FOUND) to GET and PATCH, while DELETE answers 410
KEY_ALREADY_REVOKED and rotate 410 KEY_REVOKED.
"""

from __future__ import annotations

from decimal import Decimal

from aiohttp import web

from bot.sim.openclaw_token.base import OpenClawSimBase, data_response, require_str
from bot.sim.openclaw_token.state import (
    ProvKey,
    SimError,
    iso,
    key_hash,
    new_provisioned_key,
    parse_limit_reset,
    parse_money,
    parse_time,
)


class KeyRoutes(OpenClawSimBase):
    """`/keys*`."""

    async def create_key(self, request: web.Request) -> web.Response:
        """POST /keys {name, credit_limit?, limit_reset?, expires_at?} -> 201 with the value."""
        account = self._signed_in(request)
        body = await self._body(request)
        name = require_str(body, "name")
        if len(name) > 64:
            raise SimError(400, "INVALID_INPUT", "name must be at most 64 characters")
        if any(k.name == name for k in account.live_keys()):
            raise SimError(409, "KEY_NAME_EXISTS", f"A key named '{name}' already exists.")
        now = self.now()
        expires_at = parse_time(body.get("expires_at"), "expires_at")
        # The real server stores a past expires_at (a key born expired); the switch refuses it.
        if self.config.refuse_past_expiry and expires_at is not None and expires_at <= now:
            raise SimError(400, "INVALID_INPUT", "expires_at must be in the future")
        value = new_provisioned_key()
        key = ProvKey(
            hash=key_hash(value),
            value=value,
            name=name,
            created_at=now,
            credit_limit=parse_money(
                body.get("credit_limit"), "credit_limit", minimum=Decimal("0.01"), allow_null=True
            ),
            limit_reset=parse_limit_reset(body.get("limit_reset")),
            expires_at=expires_at,
        )
        account.keys[key.hash] = key
        return data_response(key.view(with_value=True), 201)

    async def list_keys(self, request: web.Request) -> web.Response:
        """GET /keys?include_revoked: never the values."""
        account = self._signed_in(request)
        everything = request.query.get("include_revoked", "").lower() in ("1", "true", "yes")
        keys = list(account.keys.values()) if everything else account.live_keys()
        return data_response({"items": [k.view() for k in keys], "total": len(keys)})

    def _live_key(self, request: web.Request) -> ProvKey:
        """The caller's key by hash; a revoked one is "not found", as on the real server."""
        key = self._own_key(self._signed_in(request), request)
        if key.revoked_at is not None:
            raise SimError(404, "KEY_NOT_FOUND", "Key not found")
        return key

    async def key_info(self, request: web.Request) -> web.Response:
        """GET /keys/:hash with the (placeholder) usage breakdown."""
        return data_response(self._live_key(request).detail(self.now()))

    async def update_key(self, request: web.Request) -> web.Response:
        """PATCH /keys/:hash {credit_limit, limit_reset, disabled}."""
        key = self._live_key(request)
        body = await self._body(request)
        if "credit_limit" in body:
            key.credit_limit = parse_money(
                body["credit_limit"], "credit_limit", minimum=Decimal("0.01"), allow_null=True
            )
        if "limit_reset" in body:
            key.limit_reset = parse_limit_reset(body["limit_reset"])
        if "disabled" in body:
            if not isinstance(body["disabled"], bool):
                raise SimError(400, "INVALID_INPUT", "disabled must be true or false")
            key.disabled = body["disabled"]
        return data_response(key.view())

    async def revoke_key(self, request: web.Request) -> web.Response:
        """DELETE /keys/:hash."""
        key = self._own_key(self._signed_in(request), request)
        if key.revoked_at is not None:
            raise SimError(410, "KEY_ALREADY_REVOKED", "The key was already revoked.")
        key.revoked_at = self.now()
        return data_response(
            {"hash": key.hash, "name": key.name, "revoked": True, "revoked_at": iso(key.revoked_at)}
        )

    async def rotate_key(self, request: web.Request) -> web.Response:
        """POST /keys/:hash/rotate: a new value; hash and settings stay."""
        key = self._own_key(self._signed_in(request), request)
        if key.revoked_at is not None:
            raise SimError(410, "KEY_REVOKED", "The key has been revoked.")
        key.value = new_provisioned_key()
        return data_response({**key.view(with_value=True), "rotated_at": iso(self.now())})
