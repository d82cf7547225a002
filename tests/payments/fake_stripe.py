"""A fake of Stripe's API for the tests: POST /v1/checkout/sessions records the request (its form
fields, headers) and answers a Checkout Session with a url, as Stripe does; `fail` makes it answer
500 instead. It runs on a real port on 127.0.0.1, started by the test."""
from __future__ import annotations

import secrets

from aiohttp import web

from reapi.mock_upstream import bound_port


class FakeStripe:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail = False
        self.sessions: dict[str, dict] = {}
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> "FakeStripe":
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{bound_port(self.runner)}"
        return self

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()

    async def _create(self, request: web.Request) -> web.Response:
        form = dict(await request.post())
        self.requests.append({"form": form, "headers": dict(request.headers)})
        if self.fail:
            return web.json_response({"error": {"type": "api_error", "message": "boom"}}, status=500)
        sid = "cs_test_" + secrets.token_hex(24)
        session = {"id": sid, "object": "checkout.session", "mode": form.get("mode"), "status": "open",
                   "payment_status": "unpaid", "currency": form.get("line_items[0][price_data][currency]"),
                   "amount_total": int(form.get("line_items[0][price_data][unit_amount]", "0")),
                   "client_reference_id": form.get("client_reference_id"),
                   "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
                   "success_url": form.get("success_url"), "cancel_url": form.get("cancel_url"),
                   "url": f"https://checkout.stripe.test/c/pay/{sid}"}
        self.sessions[sid] = session
        return web.json_response(session)
