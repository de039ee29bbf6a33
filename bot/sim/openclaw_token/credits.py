"""The OpenClaw Token simulator's credits: balance, purchases (fee, idempotency), history, top-up."""

from __future__ import annotations

import secrets
from decimal import Decimal
from typing import Any

from aiohttp import web

from bot.backends.openclaw_token.service import MIN_PURCHASE, platform_fee
from bot.sim.openclaw_token.base import OpenClawSimBase, data_response
from bot.sim.openclaw_token.state import (
    HISTORY_TYPES,
    AutoTopupSettings,
    SimError,
    iso,
    num,
    parse_money,
)

IDEMPOTENCY_WINDOW_S = 24 * 3600.0


class CreditRoutes(OpenClawSimBase):
    """`/credits*`."""

    async def credits(self, request: web.Request) -> web.Response:
        """GET /credits."""
        return data_response(self._signed_in(request).credits())

    async def purchase(self, request: web.Request) -> web.Response:
        """POST /credits/purchase {amount ≥ 5}; an Idempotency-Key is honoured for 24 h."""
        account = self._signed_in(request)
        body = await self._body(request)
        amount = parse_money(body.get("amount"), "amount", minimum=MIN_PURCHASE)
        if amount != amount.quantize(Decimal("0.01")):
            raise SimError(400, "INVALID_INPUT", "amount must have at most 2 decimals")
        now = self.now()
        idem = request.headers.get("Idempotency-Key")
        if idem:
            seen = self._idempotency.get((account.email, idem))
            if seen is not None and now - seen[2] < IDEMPOTENCY_WINDOW_S:
                if seen[0] != amount:
                    raise SimError(
                        409, "CONFLICT", "This Idempotency-Key was used with a different amount."
                    )
                self.stats["purchase replays"] += 1
                return web.json_response({"data": seen[1]}, headers={"Idempotent-Replayed": "true"})
        fee = platform_fee(amount)
        if self.config.checkout:
            session_id = f"cs_{secrets.token_hex(12)}"
            result: dict[str, Any] = {
                "checkout_url": f"{self.base_url}/checkout/{session_id}",
                "session_id": session_id,
            }
        else:
            txn = account.add_credits("purchase", amount, f"Purchase of ${amount:.2f}", now)
            self.stats["purchases"] += 1
            result = {
                "transaction_id": txn.id,
                "amount": num(amount),
                "platform_fee": num(fee),
                "total_charged": num(amount + fee),
                "new_balance": num(account.remaining),
                "created_at": iso(now),
            }
        if idem:
            self._idempotency[(account.email, idem)] = (amount, result, now)
        return data_response(result)

    async def history(self, request: web.Request) -> web.Response:
        """GET /credits/history?limit&offset&type, newest first."""
        account = self._signed_in(request)
        q = request.query
        limit_raw, offset_raw = q.get("limit", "20"), q.get("offset", "0")
        if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= 100:
            raise SimError(400, "INVALID_INPUT", "limit must be 1-100")
        if not offset_raw.isdigit():
            raise SimError(400, "INVALID_INPUT", "offset must be 0 or more")
        wanted = q.get("type")
        if wanted is not None and wanted not in HISTORY_TYPES:
            raise SimError(400, "INVALID_INPUT", f"type must be one of {', '.join(HISTORY_TYPES)}")
        items = [t for t in reversed(account.history) if wanted is None or t.type == wanted]
        limit, offset = int(limit_raw), int(offset_raw)
        page = items[offset : offset + limit]
        return data_response(
            {
                "items": [t.view() for t in page],
                "total": len(items),
                "limit": limit,
                "offset": offset,
                "has_more": offset + limit < len(items),
            }
        )

    async def auto_topup(self, request: web.Request) -> web.Response:
        """GET|PUT /credits/auto-topup {enabled, threshold ≥ 1, amount ≥ 5}."""
        account = self._signed_in(request)
        if request.method == "PUT":
            body = await self._body(request)
            current = account.auto_topup
            enabled = body.get("enabled", current.enabled)
            if not isinstance(enabled, bool):
                raise SimError(400, "INVALID_INPUT", "enabled must be true or false")
            account.auto_topup = AutoTopupSettings(
                enabled=enabled,
                threshold=parse_money(
                    body.get("threshold", num(current.threshold)), "threshold", minimum=Decimal(1)
                ),
                amount=parse_money(
                    body.get("amount", num(current.amount)), "amount", minimum=MIN_PURCHASE
                ),
            )
        return data_response(account.auto_topup.view())
