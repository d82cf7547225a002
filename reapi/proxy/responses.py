"""The Responses API's money and routing rules on the call pipeline (README "Responses API").

- relay_whole_response / relay_response_stream: the create call's answer, read through the channel type's
  Responses adapter (`parse_whole`, `stream_converter`: OpenAI's passes events through, Claude's
  translates them), settled like chat's; a
  background answer that is not finished yet keeps its hold open (settled later, exactly once); a
  `failed` response without output is released (nothing charged). The response id is recorded
  unless the client sent `store: false`: in the settlement's own batch when the call is charged (one
  commit), else through reapi.store.responses' Recorder.
- settle_background: the terminal state of a background response, seen by a retrieve or cancel, or by
  this process's poller (`watch_background`), charges its usage or releases a response that produced
  nothing; the ledger closes each hold once, so whoever sees it first bills it.
- forward_stored: one request to the channel that made a stored response (no hold, no retry, no
  redirect), bounded by REAPI_MAX_REQUEST_SECONDS.
May import what reapi.proxy may (reapi.store for the responses table); never reapi.api.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import aiohttp

from reapi import metrics
from reapi.asgi import Send, send_bytes
from reapi.billing import tokens
from reapi.billing.ledger import Release, Settlement
from reapi.billing.pricing import cost_nano
from reapi.catalog import Channel
from reapi.errors import GatewayError, bad_request
from reapi.gateway import Gateway
from reapi.proxy.call import Call
from reapi.proxy.settle import counted_usage, finish_failed, respond_charged
from reapi.proxy.stream import relay_stream
from reapi.proxy.upstream import Stopped, Watch, stopped_early, upstream_failure
from reapi.relay.base import Usage
from reapi.relay.openai import map_openai_error
from reapi.relay.openai_responses import FINAL_STATUSES, Whole, auth_headers, bad_response, parse_whole
from reapi.relay.scrub import redact_output
from reapi.store.responses import Recorder, Stored, find, forget, open_hold, values

log = logging.getLogger("reapi.requests")

# The poller of background responses: first look after POLL_FIRST_S, then every interval x 1.5 up to
# POLL_MAX_S, for as long as the hold may live (REAPI_MAX_REQUEST_SECONDS). One sleeping task per
# response (a few KB), at most MAX_POLLERS per process (beyond that a retrieve settles it, or the
# sweeper releases the hold), and at most POLL_CONCURRENCY upstream looks at a time.
POLL_FIRST_S = 1.0
POLL_MAX_S = 15.0
MAX_POLLERS = 100_000
POLL_CONCURRENCY = 32
_pollers: set[asyncio.Task] = set()


@dataclass(slots=True)
class Extra:
    """What a Responses call carries besides the Call: whether to record its id, and if background."""
    store: bool
    background: bool


def recorder(gw: Gateway) -> Recorder:
    """This process's recorder of stored-response rows (made on the first Responses call)."""
    rec = getattr(gw, "_responses_recorder", None)
    if rec is None:
        rec = gw._responses_recorder = Recorder(gw.engine)  # type: ignore[attr-defined]
    return rec


def _row(call: Call, rid: str, background: bool) -> Stored:
    return Stored(account_id=call.key.account_id, id=rid, channel_id=call.channel.id, key_id=call.key.id,
                  model=call.model, request_id=call.request_id, background=background,
                  prompt_tokens=call.prompt_tokens)


async def _record(call: Call, rid: str | None, background: bool = False) -> bool:
    """Record the response id (a background one always, others unless store: false); False if it
    could not be recorded (or a background answer has no valid id)."""
    if rid is None:
        return not background
    if not background and not call.ext.store:
        return True
    try:
        await recorder(call.gw).record(_row(call, rid, background))
    except Exception:
        log.warning("%s: its response id could not be recorded; stored-response routes will not find it",
                    call.request_id)
        return False
    return True


async def relay_whole_response(call: Call, resp: aiohttp.ClientResponse, send: Send, watch: Watch) -> None:
    gw = call.gw
    try:
        raw = await watch.run(resp.read())
        whole = call.adapter.parse_whole(raw, call.model, call.body)
    except Stopped:
        await stopped_early(call, watch)
    except GatewayError:
        gw.health.record_failure(call.channel.id)
        await finish_failed(call, "upstream_bad_response")
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        gw.health.record_failure(call.channel.id)
        await finish_failed(call, "upstream_error")
        raise upstream_failure(exc) from None
    gw.health.record_success(call.channel.id)
    if call.ext.background and whole.status not in FINAL_STATUSES:
        await _hold_for_background(call, whole, send)
        return
    if whole.status == "failed" and not whole.output:
        # Failed before producing anything: nothing charged; the client sees the failed response.
        await finish_failed(call, "upstream_response_failed")
        call.code = "upstream_response_failed"
        metrics.observe_request(call.model, call.group, 200)
        await send_bytes(send, 200, redact_output(whole.body, call.channel), call.headers)
        return
    usage = whole.usage or counted_usage(call, whole.text)
    if call.ext.store and whole.id is not None:  # recorded with the charge: one commit, before the answer
        call.stored_response = values(_row(call, whole.id, False))
    await respond_charged(call, usage, whole.body, send)


async def _hold_for_background(call: Call, whole: Whole, send: Send) -> None:
    """A background response accepted but not finished: its hold stays open until its end is seen."""
    if whole.id is None:
        await finish_failed(call, "upstream_bad_response")
        raise bad_response()
    if not await _record(call, whole.id, background=True):
        await finish_failed(call, "internal_error")
        raise GatewayError(500, "The gateway could not record the background response. The call was not "
                                "charged.", type="server_error", code="internal_error")
    call.closed = "background"  # open on purpose: settle_background (or the sweeper) closes it
    metrics.hold_closed()  # this process's gauge counts calls in flight
    metrics.observe_request(call.model, call.group, 200, upstream_s=time.perf_counter() - call.started)
    watch_background(call.gw, _row(call, whole.id, True))
    await send_bytes(send, 200, redact_output(whole.body, call.channel), call.headers)


async def relay_response_stream(call: Call, resp: aiohttp.ClientResponse, send: Send, watch: Watch) -> None:
    """The upstream's Responses events passed through; the terminal event is sent once settled."""
    ext: Extra = call.ext

    def on_id(rid: str) -> None:
        if ext.store:  # written with the charge; a stream that ends without one records it on its own
            call.stored_response = values(_row(call, rid, False))

    conv = call.adapter.stream_converter(call.model, call.channel, call.body, on_id)
    try:
        await relay_stream(call, resp, send, watch, conv, raw_lines=call.adapter.raw_lines, end=conv.end,
                           error_event=conv.error_event)
    finally:
        if call.stored_response is not None and call.closed != "charged":
            await _record(call, call.stored_response[1])  # (account_id, id, ...): reapi.store.responses.COLUMNS
    if getattr(conv, "failed", b""):
        call.code = "upstream_response_failed"


# --- background responses -------------------------------------------------------------------

async def settle_background(gw: Gateway, stored: Stored, whole: Whole) -> None:
    """Bill a background response whose terminal status was just seen (no-op while it runs, or once
    its hold is closed): its usage (our count if none is reported), or nothing if it was cancelled or
    failed before any output."""
    if not stored.background or whole.status not in FINAL_STATUSES:
        return
    hold = await open_hold(gw.engine, stored.request_id)
    if hold is None:
        return
    price = gw.catalog.snapshot.prices.get(stored.model)
    free = whole.status in ("cancelled", "failed") and not whole.output or price is None
    if free:
        op = Release(hold.request_id, hold.account_id, hold.key_id, hold.key_limited, hold.hold_nano,
                     status="cancelled" if whole.status == "cancelled" else "failed",
                     error_code="cancelled" if whole.status == "cancelled" else "upstream_response_failed")
    else:
        usage = whole.usage or Usage(prompt_tokens=stored.prompt_tokens,
                                     completion_tokens=tokens.count_completion(whole.text))
        op = Settlement(request_id=hold.request_id, account_id=hold.account_id, key_id=hold.key_id,
                        key_limited=hold.key_limited, hold_nano=hold.hold_nano,
                        cost_nano=cost_nano(price, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens),
                        prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                        cached_tokens=usage.cached_tokens)
    await gw.writer.submit(op)


def watch_background(gw: Gateway, stored: Stored) -> None:
    """Poll the upstream for a background response's end and settle it (bounded; see POLL_*)."""
    if len(_pollers) >= MAX_POLLERS:
        return
    task = asyncio.get_running_loop().create_task(_poll(gw, stored))
    _pollers.add(task)
    task.add_done_callback(_pollers.discard)


async def _poll(gw: Gateway, stored: Stored) -> None:
    deadline = time.monotonic() + gw.settings.max_request_seconds
    interval = POLL_FIRST_S
    while time.monotonic() < deadline:
        await asyncio.sleep(interval)
        interval = min(POLL_MAX_S, interval * 1.5)
        channel = gw.catalog.snapshot.channels.get(stored.channel_id)
        if channel is None or gw.http is None or gw.http.closed:
            return  # the channel is gone, or this process is stopping (the sweeper's rules apply)
        polling = getattr(gw, "_responses_polling", None)
        if polling is None:
            polling = gw._responses_polling = asyncio.Semaphore(POLL_CONCURRENCY)  # type: ignore[attr-defined]
        try:
            async with polling:
                status, raw = await forward_stored(gw, channel, "GET", f"/responses/{stored.id}", b"")
            if status == 404:
                return  # deleted upstream: nothing will ever report its end
            if status >= 300:
                continue
            whole = parse_whole(raw, stored.model)
            if whole.status in FINAL_STATUSES:
                await settle_background(gw, stored, whole)
                return
            if await open_hold(gw.engine, stored.request_id) is None:
                return  # settled by a retrieve, or released by the sweeper
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("background poll of %s failed: %s", stored.request_id, type(exc).__name__)


# --- stored-response routes -------------------------------------------------------------------

async def forward_stored(gw: Gateway, channel: Channel, method: str, path: str, body: bytes,
                         query: str = "") -> tuple[int, bytes]:
    """One request to the channel (e.g. GET /responses/{id}); (status, body). Redirects are not followed;
    raises GatewayError (502/504) when the upstream cannot be reached in time."""
    url = channel.base_url + path + ("?" + query if query else "")
    s = gw.settings

    async def go() -> tuple[int, bytes]:
        async with gw.http.request(method, url, data=body if method == "POST" else None,
                                   headers=auth_headers(channel), allow_redirects=False) as resp:
            return resp.status, await resp.read()

    try:
        async with asyncio.timeout(s.max_request_seconds):  # not wait_for: see reapi.aio
            return await go()
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise upstream_failure(exc) from None


async def find_stored(gw: Gateway, account_id: int, rid: str) -> Stored | None:
    """The record of a response id for this account (None: unknown, or another account's)."""
    return await find(gw.engine, account_id, rid)


async def forget_stored(gw: Gateway, account_id: int, rid: str) -> None:
    await forget(gw.engine, account_id, rid)


async def settle_before_delete(gw: Gateway, row: Stored, channel: Channel) -> None:
    """A background response still held is billed before it may be deleted (else deleting it would
    make it free): its current state is read; one that has not finished cannot be deleted yet."""
    if not row.background or await open_hold(gw.engine, row.request_id) is None:
        return
    status, raw = await forward_stored(gw, channel, "GET", f"/responses/{row.id}", b"")
    if status >= 300:
        raise map_openai_error(status, raw, channel)
    whole = parse_whole(raw, row.model)
    if whole.status not in FINAL_STATUSES:
        raise bad_request("This background response has not finished; cancel it (POST /v1/responses/{id}/cancel) "
                          "or wait for it to finish before deleting it.", None, "invalid_value")
    await settle_background(gw, row, whole)
