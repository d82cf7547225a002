"""Relaying an answer: an upstream SSE stream through a StreamConverter (relay_stream), or one whole
OpenAI-format JSON answer parsed by the adapter (relay_whole); both settle or release."""
from __future__ import annotations

import asyncio
import time
from typing import Callable

import aiohttp
import orjson

from reapi import metrics
from reapi.asgi import Send
from reapi.errors import GatewayError
from reapi.proxy.call import Call
from reapi.proxy.settle import counted_usage, finish_failed, finish_ok, respond_charged, usage_so_far
from reapi.proxy.upstream import Stopped, Watch, stopped_early, stream_broken, stream_ended, too_long
from reapi.relay.base import StreamConverter
from reapi.relay.scrub import redact_output

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
DONE = b"data: [DONE]\n\n"


def sse_error(err: GatewayError, request_id: str) -> bytes:
    """An error once an OpenAI stream has started: the error envelope as its last `data:` event."""
    return b"data: " + err.body() + b"\n\n"


def completion_text(obj: dict) -> str:
    parts = []
    for choice in obj.get("choices") or ():
        msg = choice.get("message") or {}
        parts.append(msg.get("content") or "")
        for tc in msg.get("tool_calls") or ():
            fn = tc.get("function") or {}
            parts.append((fn.get("name") or "") + (fn.get("arguments") or ""))
    return "".join(p for p in parts if isinstance(p, str))


async def relay_whole(call: Call, resp: aiohttp.ClientResponse, send: Send, watch: Watch) -> None:
    gw, adapter = call.gw, call.adapter
    try:
        raw = await watch.run(resp.read())
        out, usage = adapter.parse_response(raw, call.model)
    except Stopped:
        await stopped_early(call, watch)
    except GatewayError:
        gw.health.record_failure(call.channel.id)
        await finish_failed(call, "upstream_bad_response")
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        gw.health.record_failure(call.channel.id)
        err = stream_broken(exc) if not isinstance(exc, ValueError) else GatewayError(
            502, "The upstream returned a malformed completion.", type="upstream_error",
            code="upstream_bad_response")
        await finish_failed(call, err.code or "upstream_error")
        raise err from None
    gw.health.record_success(call.channel.id)
    if usage is None:
        usage = counted_usage(call, completion_text(orjson.loads(out)))
    await respond_charged(call, usage, out, send)


async def send_last(send: Send, body: bytes, wait_s: float = 5.0) -> None:
    """The last bytes of a stream cut at its deadline, to a client that may not be reading: bounded."""
    try:
        async with asyncio.timeout(wait_s):  # not wait_for: see reapi.aio
            await send({"type": "http.response.body", "body": body})
    except TimeoutError:
        pass


async def relay_stream(call: Call, resp: aiohttp.ClientResponse, send: Send, watch: Watch,
                       conv: StreamConverter, *, raw_lines: bool = False, end: Callable[[], bytes] | None = None,
                       error_event: Callable[[GatewayError, str], bytes] = sse_error) -> None:
    """Relay one upstream SSE stream through `conv`, then settle or release: both routes' streams.

    `conv` gets the payload of each upstream `data:` line (a reapi.relay.base.StreamConverter) or, with
    raw_lines, every upstream line as it came (reapi.api.messages.EventRelay). What it returns is sent
    at once; it ends the relay by setting `finished`, or by raising GatewayError for an upstream error.
    `watch` abandons the upstream response the moment the client disconnects or the call's deadline
    passes. Then, one of:
    - stopped before any event reached the client: the hold released in full (client gone: status
      client_closed; deadline: a 504 request_too_long, as JSON or as the stream's last event);
    - client gone later: charged the prompt and what was produced (usage_so_far), status client_closed;
    - deadline passed later: charged likewise, status too_long, and a 504 request_too_long last event;
    - failure (error, broken stream, or an end without `finished` nor usage): the hold released and
      `error_event(err, request_id)` sent as the last event;
    - success: settled on the upstream's usage (else our count) BEFORE the terminator is sent, so once
      the client sees it the books agree. The terminator is `end()`, by default OpenAI's [DONE].
    """
    gw = call.gw
    feed = conv.feed
    ttft = None
    failure: GatewayError | None = None

    async def pump() -> None:
        nonlocal ttft
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + call.headers})
        call.streaming = True
        async for line in resp.content:
            if raw_lines:
                events = feed(line)
            elif line[:5] == b"data:":
                events = feed(line[5:].strip())
            else:
                continue
            if events:
                now = time.perf_counter()
                await send({"type": "http.response.body", "body": redact_output(b"".join(events), call.channel),
                            "more_body": True})
                if ttft is None:
                    ttft = now - call.started  # set once sent: a send cut short delivered nothing
            if conv.finished:
                break

    try:
        await watch.run(pump())
    except Stopped:
        resp.close()  # the upstream request is abandoned: its socket closes now
        await stream_stopped(call, send, watch, conv, ttft, error_event)
        return
    except GatewayError as exc:
        failure = exc
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        failure = stream_broken(exc)  # the connection dropped (or a line too long) mid-stream

    if failure is None and not conv.finished and conv.usage is None:
        failure = stream_ended()
    if failure is not None:
        gw.health.record_failure(call.channel.id)
        await finish_failed(call, failure.code or "upstream_error")
        call.status, call.code = failure.status, failure.code or "upstream_error"
        metrics.observe_request(call.model, call.group, failure.status, ttft_s=ttft)
        await send({"type": "http.response.body", "body": error_event(failure, call.request_id)})
        return
    gw.health.record_success(call.channel.id)
    usage = conv.usage or counted_usage(call, conv.produced_text())
    charged = await finish_ok(call, usage)  # settle before the terminator: once the client sees it, the books agree
    metrics.observe_request(call.model, call.group, 200, upstream_s=time.perf_counter() - call.started,
                            ttft_s=ttft, prompt_tokens=usage.prompt_tokens,
                            completion_tokens=usage.completion_tokens, cost_nano=charged)
    await send({"type": "http.response.body", "body": DONE if end is None else redact_output(end(), call.channel)})


async def stream_stopped(call: Call, send: Send, watch: Watch, conv: StreamConverter, ttft: float | None,
                         error_event: Callable[[GatewayError, str], bytes]) -> None:
    """A stream the client left, or that reached its deadline (see relay_stream)."""
    if not call.streaming:
        await stopped_early(call, watch)  # nothing sent yet: released; ClientGone or a JSON 504
    if ttft is None:  # headers only: nothing of the answer was delivered, nothing is charged
        if watch.gone:
            await finish_failed(call, "client_closed", status="client_closed")
            call.status, call.code = 499, "client_closed"
            metrics.observe_request(call.model, call.group, 499)
            return
        await finish_failed(call, "request_too_long")
        call.status, call.code = 504, "request_too_long"
        metrics.observe_request(call.model, call.group, 504)
        await send_last(send, error_event(too_long(call, charged=False), call.request_id))
        return
    # Output was delivered: charge the prompt and what was produced so far (README "Billing").
    usage = usage_so_far(call, conv)
    status, code = (499, "client_closed") if watch.gone else (504, "too_long")
    charged = await finish_ok(call, usage, status=code)
    call.status, call.code = status, code
    metrics.observe_request(call.model, call.group, status, ttft_s=ttft, prompt_tokens=usage.prompt_tokens,
                            completion_tokens=usage.completion_tokens, cost_nano=charged)
    if not watch.gone:
        await send_last(send, error_event(too_long(call, charged=True), call.request_id))


