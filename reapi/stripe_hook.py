"""POST /webhooks/stripe: Stripe's deliveries of payment events (a wing; mounted as an exact path).

Plain ASGI: the raw body (at most 1 MiB) and its `Stripe-Signature` header go to
reapi.payments.stripe.handle_event, which checks the signature, credits a paid top-up once and
says what to answer: 2xx only once the event is durably handled, 400 for a bad or stale signature
or a malformed event, 500 when the store failed (Stripe delivers the event again). The answer is a
small JSON object; it never echoes the event.

May import: payments, asgi, errors, gateway (for its engine and settings).
"""
from __future__ import annotations

import logging

import orjson

from reapi.asgi import ClientGone, Receive, Send, header, read_body, send_bytes, send_error
from reapi.errors import GatewayError
from reapi.gateway import Gateway
from reapi.payments import stripe as stripe_topups

log = logging.getLogger("reapi.stripe_hook")
MAX_EVENT_BYTES = 1024 * 1024  # Stripe's events are a few KB


async def stripe_webhook(gw: Gateway, scope: dict, receive: Receive, send: Send) -> None:
    if scope["method"] != "POST":
        return await send_error(send, GatewayError(405, "Use POST for /webhooks/stripe.", code="method_not_allowed"),
                                [(b"allow", b"POST")])
    if not stripe_topups.enabled(gw.settings):
        return await send_error(send, GatewayError(404, "Stripe top-ups are not enabled on this gateway.",
                                                   code="not_found"), [])
    try:
        body = await read_body(scope, receive, MAX_EVENT_BYTES)
    except GatewayError as err:
        return await send_error(send, err, [])
    except ClientGone:
        return
    sig = header(scope, b"stripe-signature")
    try:
        outcome = await stripe_topups.handle_event(gw.engine, gw.settings, body,
                                                   sig.decode("latin-1") if sig is not None else None)
    except Exception:
        log.exception("Stripe webhook failed")
        outcome = stripe_topups.Outcome(500, "failed")
    await send_bytes(send, outcome.status, orjson.dumps({"received": outcome.status < 300,
                                                         "result": outcome.result}), [])
