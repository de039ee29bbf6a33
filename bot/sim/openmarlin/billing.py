"""The OpenMarlin simulator's money: balance, usage events, ledger, top-ups, referral."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from aiohttp import web

from bot.sim.openmarlin.base import KEY, OpenMarlinSimBase, html_response
from bot.sim.openmarlin.pages import checkout_page, closed_page, paid_page
from bot.sim.openmarlin.world import UNIT, ApiError, TopUp, iso, money, new_id, num


class BillingRoutes(OpenMarlinSimBase):
    """`/v1/balance`, `/v1/usage-events`, `/v1/ledger`, `/v1/topup/sessions*`, the checkout."""

    async def balance(self, request: web.Request) -> web.Response:
        """GET /v1/balance."""
        ws = self._ws(request)
        return web.json_response(
            {
                "workspace_id": ws.workspace_id,
                "available_balance": money(ws.balance),
                "updated_at": iso(ws.updated_at),
            }
        )

    @staticmethod
    def _limit(request: web.Request) -> int:
        raw = request.query.get("limit", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise ApiError(400, "invalid_request", "limit must be 1-100")
        return int(raw)

    async def usage_events(self, request: web.Request) -> web.Response:
        """GET /v1/usage-events: newest first."""
        rows = list(reversed(self._ws(request).usage))[: self._limit(request)]
        return web.json_response({"data": [r.body() for r in rows]})

    async def ledger(self, request: web.Request) -> web.Response:
        """GET /v1/ledger: newest first."""
        rows = list(reversed(self._ws(request).ledger))[: self._limit(request)]
        return web.json_response({"data": [r.body() for r in rows]})

    async def create_topup(self, request: web.Request) -> web.Response:
        """POST /v1/topup/sessions {amount}."""
        body = await self._body(request)
        raw = body.get("amount")
        try:
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise InvalidOperation
            amount = Decimal(str(raw))
        except InvalidOperation:
            raise ApiError(400, "invalid_request", "amount must be a number") from None
        if not amount.is_finite() or amount <= 0 or amount > 100_000:
            raise ApiError(400, "invalid_request", "amount must be between 0 and 100000")
        ws = self._ws(request)
        session_id = new_id("tops_")
        topup = TopUp(
            session_id,
            ws.workspace_id,
            amount,
            self.now(),
            f"{self.base_url}/checkout/{session_id}",
            new_id("cs_test_", 12),
        )
        self._topups[session_id] = topup
        return web.json_response(topup.body(), status=201)

    async def get_topup(self, request: web.Request) -> web.Response:
        """GET /v1/topup/sessions/:id."""
        topup = self._topups.get(request.match_info["id"])
        if topup is None or topup.workspace_id != request[KEY].workspace_id:
            raise ApiError(404, "not_found", "no such top-up session")
        return web.json_response(topup.body())

    async def checkout(self, request: web.Request) -> web.Response:
        """GET/POST /checkout/{id}: the stand-in for Stripe Checkout."""
        topup = self._topups.get(request.match_info["id"])
        if topup is None:
            return html_response(closed_page("unknown"), 404)
        if request.method == "POST" and topup.status == "pending_payment":
            decision = str((await request.post()).get("decision") or "")
            now = self.now()
            if decision == "pay":
                ws = self._workspaces[topup.workspace_id]
                row = ws.post(now, "topup_credit", topup.amount, topup.session_id)
                topup.status, topup.ledger_entry_id = "credit_applied", row.entry_id
            elif decision == "fail":
                topup.status = "payment_failed"
            else:
                return html_response(
                    checkout_page(
                        str(num(topup.amount)), UNIT, topup.stripe_reference, topup.status
                    ),
                    400,
                )
            topup.completed_at = now
            return html_response(paid_page(topup.status))
        return html_response(
            checkout_page(str(num(topup.amount)), UNIT, topup.stripe_reference, topup.status)
        )

    async def referral(self, request: web.Request) -> web.Response:
        """The referral endpoint (its real path is unpublished)."""
        if not self.config.referrals:
            raise ApiError(404, "not_found", "no such route")
        ws = self._ws(request)
        code = ws.slug.upper().replace("-", "")[:8] or "MARLIN"
        return web.json_response(
            {
                "referral_code": code,
                "invite_url": f"{self.base_url}/invite/{code}",
                "attribution": {"invited": 3, "converted": 1, "credits_earned": money(Decimal(5))},
            }
        )
