"""One call, driven end to end: admit, then relay, every error answered in the route's wire format, and
the one request log line (logger "reapi.requests") when the request is finished.

A route hands `serve` its Wire (how its errors look as a JSON answer and as a stream's last event) and
its two stages: `admit(call, scope, receive)` (parse, validate, choose channel and adapter, then
admission.reserve) and `relay(call, scope, send, receive)` (build the upstream request, then
upstream.forward with the answer it wants: stream.relay_stream with its converter and terminator, or a
whole-body relay)."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from reapi import metrics
from reapi.asgi import CONNECTION_KEY, ClientGone, Receive, Send, error_headers, send_bytes
from reapi.billing.money import format_usd
from reapi.errors import INTERNAL_ERROR, GatewayError
from reapi.proxy.call import Call
from reapi.proxy.settle import fail_internal

log = logging.getLogger("reapi.requests")

Admit = Callable[[Call, dict, Receive], Awaitable[None]]
Relay = Callable[[Call, dict, Send, Receive], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Wire:
    """A route's client format for errors: `body(err, request_id)` as a whole JSON answer, `event(err,
    request_id)` as the last event of a stream that has started."""

    body: Callable[[GatewayError, str], bytes]
    event: Callable[[GatewayError, str], bytes]


async def send_error(send: Send, call: Call, wire: Wire, err: GatewayError) -> None:
    await send_bytes(send, err.status, wire.body(err, call.request_id), error_headers(err, call.headers))


def log_request(call: Call) -> None:
    """The request's one log line: ids, model, outcome, tokens, cost and duration. Never the prompt, the
    client's key, or anything of the upstream but the channel id. A 5xx is logged at warning."""
    level = logging.WARNING if call.status >= 500 else logging.INFO
    if not log.isEnabledFor(level):
        return
    u = call.usage
    log.log(level,
            "%s key=%s model=%r status=%d code=%s channel=%s prompt=%d completion=%d cached=%d cost=%s ms=%d",
            call.request_id, call.key.id if call.key is not None else "-", call.model[:100], call.status,
            call.code or "-", call.channel.id if call.channel is not None else "-",
            u.prompt_tokens if u else 0, u.completion_tokens if u else 0, u.cached_tokens if u else 0,
            format_usd(call.charged), (time.perf_counter() - call.started) * 1000)


async def refuse(send: Send, call: Call, wire: Wire, err: GatewayError) -> None:
    """Answer a request refused before it was admitted (no metrics: not a call), and log it."""
    call.status, call.code = err.status, err.code or ""
    try:
        await send_error(send, call, wire, err)
    finally:
        log_request(call)


async def serve(call: Call, wire: Wire, admit: Admit, relay: Relay, scope: dict, receive: Receive,
                send: Send) -> None:
    call.conn = scope.get(CONNECTION_KEY)
    try:
        try:
            await admit(call, scope, receive)
        except GatewayError as err:
            metrics.observe_request(call.model, call.group, err.status)
            call.status, call.code = err.status, err.code or ""
            await send_error(send, call, wire, err)
            return
        except ClientGone:
            call.status, call.code = 499, "client_closed"
            return
        except Exception:
            log.exception("%s failed inside the gateway before the hold", call.request_id)
            call.status, call.code = 500, "internal_error"
            await send_error(send, call, wire, INTERNAL_ERROR)
            return
        # From here money is held: every path below settles or releases it.
        try:
            await relay(call, scope, send, receive)
        except GatewayError as err:
            metrics.observe_request(call.model, call.group, err.status)
            call.status, call.code = err.status, err.code or ""
            await send_error(send, call, wire, err)
        except ClientGone:
            call.status, call.code = 499, "client_closed"  # left before the answer; released
        except Exception:
            log.exception("%s failed inside the gateway", call.request_id)
            err = await fail_internal(call)
            call.status, call.code = err.status, err.code or ""
            if call.streaming:
                await send({"type": "http.response.body", "body": wire.event(err, call.request_id)})
            else:
                await send_error(send, call, wire, err)
    finally:
        log_request(call)
