"""Settlement: charge a call on its usage (finish_ok) or release its hold in full (finish_failed)."""
from __future__ import annotations

import logging
import time

from reapi import metrics
from reapi.asgi import Send, send_bytes
from reapi.billing import tokens
from reapi.billing.ledger import HoldResult, Release, Settlement
from reapi.billing.money import format_usd
from reapi.billing.pricing import cost_nano
from reapi.errors import CHARGED_ERROR, INTERNAL_ERROR, UNRECORDED_ERROR, GatewayError
from reapi.proxy.call import Call
from reapi.relay.base import StreamConverter, Usage
from reapi.relay.scrub import redact_output

log = logging.getLogger("reapi.requests")


async def finish_failed(call: Call, error_code: str, result: HoldResult | None = None,
                        status: str = "failed") -> None:
    """Release the whole hold: failed calls are never charged.

    The call counts as closed only once the release is written; if the write fails the error propagates
    (logged here) and the call stays open, so a later attempt (the route's last resort, fail_internal)
    tries again and the client is never told "not charged" for a hold that is still open."""
    if result is None and call.closed:
        return
    held = result or call.hold
    gw, key = call.gw, call.key
    limited = key.spend_limit_nano is not None
    try:
        await gw.writer.submit(Release(call.request_id, key.account_id, key.id, limited, held.amount,
                                       status=status, error_code=error_code))
    except Exception:
        log.exception("%s could not release its hold", call.request_id)
        raise
    if result is None:
        call.closed = "released"
    metrics.hold_closed()
    if call.admitted_tokens:
        await gw.limiter.adjust(call.rules, -call.admitted_tokens)


async def release_orphan(call: Call, result: HoldResult) -> None:
    try:
        await finish_failed(call, "cancelled", result)
    except Exception:
        pass  # logged by finish_failed; the writer keeps retrying the release at every sweep


async def finish_ok(call: Call, usage: Usage, status: str = "ok") -> int:
    """Charge the call on its usage; returns the amount charged (nano-USD). The call counts as closed
    only once the settlement is written; a failed write propagates (the caller's last resort releases)."""
    gw, key = call.gw, call.key
    cost = cost_nano(call.price, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                     usage.cache_write_tokens)
    s = Settlement(request_id=call.request_id, account_id=key.account_id, key_id=key.id,
                   key_limited=key.spend_limit_nano is not None, hold_nano=call.hold.amount, cost_nano=cost,
                   prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                   cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens, status=status,
                   stored_response=call.stored_response)
    charged = await gw.writer.submit(s)
    call.closed = "charged"
    call.usage, call.charged = usage, charged or 0
    metrics.hold_closed()
    if call.admitted_tokens:
        await gw.limiter.adjust(call.rules, usage.prompt_tokens + usage.completion_tokens - call.admitted_tokens)
    return charged or 0


async def fail_internal(call: Call) -> GatewayError:
    """The last resort after a gateway fault once money is held: release the hold if it is still open,
    and pick the 500 to send, which says "not charged" only if the hold was released."""
    if not call.closed:
        try:
            await finish_failed(call, "internal_error")
        except Exception:
            pass  # logged by finish_failed; the hold stays pending until the sweeper releases it
    if call.closed == "released":
        return INTERNAL_ERROR
    return CHARGED_ERROR if call.closed == "charged" else UNRECORDED_ERROR


def counted_usage(call: Call, produced: str) -> Usage:
    """Usage when the upstream reported none: our own prompt count and the produced text."""
    return Usage(prompt_tokens=call.prompt_tokens, completion_tokens=tokens.count_completion(produced))


def usage_so_far(call: Call, conv: StreamConverter) -> Usage:
    """Usage of a stream the client left: the upstream's own when it was reported; else the prompt as the
    upstream counted it early (`conv.input_usage()`, Anthropic's message_start) or, failing that, as we
    did (our estimate, with its Claude margin), plus the tokens produced so far."""
    if conv.usage is not None:
        return conv.usage
    usage = conv.input_usage()
    if usage is None:
        return counted_usage(call, conv.produced_text())
    usage.completion_tokens = tokens.count_completion(conv.produced_text())
    return usage


async def respond_charged(call: Call, usage: Usage, body: bytes, send: Send) -> None:
    """A whole (non-streamed) answer: settle first, then send it with the cost it was charged."""
    charged = await finish_ok(call, usage)
    call.headers.append((b"x-reapi-cost-usd", format_usd(charged).encode()))
    metrics.observe_request(call.model, call.group, 200, upstream_s=time.perf_counter() - call.started,
                            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                            cost_nano=charged)
    await send_bytes(send, 200, redact_output(body, call.channel), call.headers)
