"""POST /v1/chat/completions, the hot path.

One request flows one way: auth -> parse and validate -> route -> count -> limits
-> hold -> relay -> settle -> response. Nothing here queries the store except
the hold and the settlement (both group-committed by the billing writer); keys,
channels and prices come from the in-memory catalog.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from typing import Callable

import aiohttp
import orjson

from reapi import metrics
from reapi.api.http import (ClientGone, Receive, Send, bearer, headers_list, read_body, send_bytes,
                            send_error)
from reapi.api.validation import validate_chat
from reapi.billing import tokens
from reapi.billing.ledger import HoldRequest, HoldResult, Release, Settlement
from reapi.billing.money import format_usd
from reapi.billing.pricing import affordable_output, cost_nano
from reapi.catalog import ApiKey, Channel, Price
from reapi.errors import INTERNAL_ERROR, GatewayError, bad_request
from reapi.gateway import ADAPTERS, Gateway
from reapi.limits import Decision, Rule
from reapi.relay.base import StreamConverter, Usage
from reapi.relay.select import pick
from reapi.store.cache import hash_key

log = logging.getLogger("reapi.requests")

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
               (b"x-accel-buffering", b"no")]
DONE = b"data: [DONE]\n\n"


def sse_error(err: GatewayError, request_id: str) -> bytes:
    """An error once an OpenAI stream has started: the error envelope as its last `data:` event."""
    return b"data: " + err.body() + b"\n\n"


_REQUEST_PREFIX = "req_" + os.urandom(8).hex()  # per process: ids stay unique across instances
_request_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_REQUEST_PREFIX}{next(_request_counter):08x}"


def authenticate(gw: Gateway, scope: dict) -> ApiKey:
    secret = bearer(scope)
    if secret is None:
        raise GatewayError(401, "Missing API key: send it as 'Authorization: Bearer sk-...'.",
                           type="invalid_request_error", code="invalid_api_key")
    key = gw.catalog.snapshot.keys.get(hash_key(secret))
    if key is None:
        raise GatewayError(401, "Invalid API key: it is unknown or has been revoked.",
                           type="invalid_request_error", code="invalid_api_key")
    return key


def resolve_model(gw: Gateway, key: ApiKey, group: str, model: str) -> tuple[Price, list[list[Channel]]]:
    snap = gw.catalog.snapshot
    if group not in snap.groups:
        raise bad_request(f"Unknown group '{group}'.", param="group", code="invalid_group")
    if key.groups is not None and group not in key.groups:
        raise GatewayError(403, f"This API key may not use group '{group}'.", type="permission_error",
                           param="group", code="group_not_allowed")
    if key.models is not None and model not in key.models:
        raise GatewayError(403, f"This API key may not use model '{model}'.", type="permission_error",
                           param="model", code="model_not_allowed")
    price = snap.prices.get(model)
    tiers = snap.pools.get((group, model))
    if price is None or not tiers:
        raise GatewayError(404, f"The model '{model}' does not exist or is not served in group '{group}'.",
                           type="invalid_request_error", param="model", code="model_not_found")
    return price, tiers


def limit_rules(gw: Gateway, key: ApiKey, group: str) -> list[Rule]:
    g = gw.catalog.snapshot.groups[group]
    rules = []
    if g.rpm is not None or g.tpm is not None:
        rules.append(Rule(f"acct:{group}:{key.account_id}", g.rpm, g.tpm))
    if g.total_rpm is not None or g.total_tpm is not None:
        rules.append(Rule(f"group:{group}", g.total_rpm, g.total_tpm))
    if key.rpm is not None or key.tpm is not None:
        rules.append(Rule(f"key:{key.id}", key.rpm, key.tpm))
    return rules


def rate_limit_error(decision: Decision) -> GatewayError:
    kind = decision.kind or "requests"
    wait = max(1, int(decision.retry_after_s + 0.999))
    return GatewayError(
        429, f"Rate limit reached for {kind} in this group; retry after {wait}s.", type=kind,
        code="rate_limit_exceeded", headers={**decision.headers, "retry-after": str(wait)})


class Call:
    """Everything one admitted request carries from the hold to the settlement."""

    __slots__ = ("gw", "request_id", "key", "body", "model", "group", "price", "channel", "adapter",
                 "stream", "include_usage", "prompt_tokens", "n", "cap", "send_cap", "rules", "admitted_tokens",
                 "hold", "headers", "started", "status", "closed", "streaming")

    def __init__(self, gw: Gateway, request_id: str) -> None:
        self.gw = gw
        self.request_id = request_id
        self.headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        self.hold: HoldResult | None = None
        self.rules: list[Rule] = []
        self.admitted_tokens = 0
        self.send_cap: int | None = None
        self.started = time.perf_counter()
        self.status = 200
        self.closed = False  # the hold was settled or released
        self.streaming = False  # response headers were sent


async def read_json(call: Call, scope: dict, receive: Receive, auth=authenticate) -> object:
    """Authenticate (with the route's `auth`), then read and parse the body once."""
    call.key = auth(call.gw, scope)
    raw = await read_body(scope, receive, call.gw.settings.max_body_bytes)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.", code="invalid_json") from None


async def admit(call: Call, scope: dict, receive: Receive) -> None:
    gw = call.gw
    body = await read_json(call, scope, receive)
    key = call.key
    validate_chat(body)
    call.body = body
    call.model = model = body["model"]
    call.group = group = body.get("group") or "default"
    call.stream = stream = body.get("stream") is True
    call.include_usage = stream and bool((body.get("stream_options") or {}).get("include_usage"))
    call.price, tiers = resolve_model(gw, key, group, model)
    call.channel = channel = pick(tiers, gw.health.available)
    call.adapter = ADAPTERS[channel.type]
    call.prompt_tokens = await tokens.count_prompt_async(body, "claude" if channel.type == "anthropic" else "openai")

    price = call.price
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    call.cap = min(requested, price.max_output_tokens) if requested else price.max_output_tokens
    call.n = body.get("n") or 1
    if getattr(call.adapter, "requires_max_tokens", False) or requested and requested > price.max_output_tokens:
        call.send_cap = call.cap
    await reserve(call, call.cap)


async def reserve(call: Call, asked: int) -> None:
    """The end of both routes' admit: rate limits, then the hold, then the headers they add.

    Admits prompt + cap x n tokens against the key's and group's limits (429 when refused), places
    the hold (402 when the balance cannot pay; it may lower call.send_cap to what the balance pays)
    and announces a cap sent upstream below `asked`, the cap the client asked for, in
    x-reapi-output-cap."""
    gw = call.gw
    call.rules = limit_rules(gw, call.key, call.group)
    if call.rules:
        call.admitted_tokens = call.prompt_tokens + call.cap * call.n
        decision = await gw.limiter.admit(call.rules, call.admitted_tokens)
        call.headers += headers_list(decision.headers.items())
        if not decision.allowed:
            metrics.rate_limited(call.group, decision.kind or "requests")
            raise rate_limit_error(decision)
    call.hold = await place_hold(call)
    call.headers.append((b"x-reapi-balance-usd", format_usd(call.hold.balance_after).encode()))
    if call.send_cap is not None and call.send_cap < asked:
        call.headers.append((b"x-reapi-output-cap", str(call.send_cap).encode()))


async def place_hold(call: Call) -> HoldResult:
    price, prompt, n = call.price, call.prompt_tokens, call.n
    min_out = call.gw.settings.min_output_tokens

    def resize(available: int) -> int | None:
        per_choice = affordable_output(price, prompt, available) // n
        if per_choice < min(min_out, call.cap):
            return None
        call.send_cap = min(call.cap, per_choice)  # lower the cap sent upstream to what the balance pays
        return cost_nano(price, prompt, call.send_cap * n)

    req = HoldRequest(
        request_id=call.request_id, account_id=call.key.account_id, key_id=call.key.id,
        key_spend_limit_nano=call.key.spend_limit_nano, model=call.model, group=call.group,
        channel_id=call.channel.id, stream=call.stream, worst_nano=cost_nano(price, prompt, call.cap * n),
        resize=resize)
    gw = call.gw

    def orphaned(result: HoldResult) -> None:  # our request died while the hold was being written
        if result.ok:
            asyncio.get_running_loop().create_task(finish_failed(call, "cancelled", result))

    result: HoldResult = await gw.writer.submit(req, orphaned)
    if not result.ok:
        if call.admitted_tokens:
            await gw.limiter.adjust(call.rules, -call.admitted_tokens)
        if result.refusal == "key_spend_limit_reached":
            raise GatewayError(402, "This API key has reached its spend limit.", type="insufficient_quota",
                               code="key_spend_limit_reached", headers={"x-should-retry": "false"})
        raise GatewayError(402, "Insufficient balance for this request; top up the account to continue.",
                           type="insufficient_quota", code="insufficient_balance",
                           headers={"x-should-retry": "false"})
    metrics.hold_opened()
    return result


async def finish_failed(call: Call, error_code: str, result: HoldResult | None = None) -> None:
    """Release the whole hold: failed calls are never charged."""
    if result is None:
        if call.closed:
            return
        call.closed = True
    held = result or call.hold
    gw, key = call.gw, call.key
    limited = key.spend_limit_nano is not None
    await gw.writer.submit(Release(call.request_id, key.account_id, key.id, limited, held.amount,
                                   error_code=error_code))
    metrics.hold_closed()
    if call.admitted_tokens:
        await gw.limiter.adjust(call.rules, -call.admitted_tokens)


async def finish_ok(call: Call, usage: Usage, status: str = "ok") -> int:
    """Charge the call on its usage; returns the amount charged (nano-USD)."""
    call.closed = True
    gw, key = call.gw, call.key
    cost = cost_nano(call.price, usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens,
                     usage.cache_write_tokens)
    s = Settlement(request_id=call.request_id, account_id=key.account_id, key_id=key.id,
                   key_limited=key.spend_limit_nano is not None, hold_nano=call.hold.amount, cost_nano=cost,
                   prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                   cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens, status=status)
    charged = await gw.writer.submit(s)
    metrics.hold_closed()
    if call.admitted_tokens:
        await gw.limiter.adjust(call.rules, usage.prompt_tokens + usage.completion_tokens - call.admitted_tokens)
    return charged or 0


def counted_usage(call: Call, produced: str) -> Usage:
    """Usage when the upstream reported none: our own prompt count and the produced text."""
    return Usage(prompt_tokens=call.prompt_tokens, completion_tokens=tokens.count_completion(produced))


def usage_so_far(call: Call, conv: StreamConverter) -> Usage:
    """Usage of a stream the client left: the upstream's own when it was reported; else the prompt as the
    upstream counted it early (`conv.input_usage()`, Anthropic's message_start) or, failing that, as we
    did (our estimate, with its Claude margin), plus the tokens produced so far."""
    if conv.usage is not None:
        return conv.usage
    early = getattr(conv, "input_usage", None)
    usage = early() if early is not None else None
    if usage is None:
        return counted_usage(call, conv.produced_text())
    usage.completion_tokens = tokens.count_completion(conv.produced_text())
    return usage


def completion_text(obj: dict) -> str:
    parts = []
    for choice in obj.get("choices") or ():
        msg = choice.get("message") or {}
        parts.append(msg.get("content") or "")
        for tc in msg.get("tool_calls") or ():
            fn = tc.get("function") or {}
            parts.append((fn.get("name") or "") + (fn.get("arguments") or ""))
    return "".join(p for p in parts if isinstance(p, str))


def stream_ended() -> GatewayError:
    return GatewayError(502, "The upstream stream ended early. The call was not charged.",
                        type="upstream_error", code="upstream_stream_ended")


def upstream_failure(exc: BaseException) -> GatewayError:
    if isinstance(exc, asyncio.TimeoutError):
        return GatewayError(504, "The upstream provider timed out. The call was not charged.",
                            type="upstream_error", code="upstream_timeout")
    return GatewayError(502, "The upstream provider could not be reached. The call was not charged.",
                        type="upstream_error", code="upstream_unreachable")


async def relay_once(call: Call, send: Send, receive: Receive) -> None:
    """Exactly one upstream POST: no retry here, ever (the SDKs retry 5xx safely, as failures cost nothing)."""
    channel, adapter = call.channel, call.adapter
    try:
        req = adapter.build_request(channel, call.body, channel.upstream_model(call.model), stream=call.stream,
                                    max_tokens=call.send_cap)
    except GatewayError as err:  # a parameter this provider cannot honour: nothing was sent, release
        await finish_failed(call, err.code or "invalid_request")
        raise
    gw = call.gw
    try:
        resp = await gw.http.post(req.url, data=req.body, headers=req.headers)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        gw.health.record_failure(channel.id)
        await finish_failed(call, "upstream_unreachable" if not isinstance(exc, asyncio.TimeoutError)
                            else "upstream_timeout")
        raise upstream_failure(exc) from None
    try:
        if resp.status >= 300:
            raw = await _read_safely(resp)
            if resp.status >= 500 or resp.status in (401, 403, 429):
                gw.health.record_failure(channel.id)
            err = adapter.map_error(resp.status, raw, channel)
            await finish_failed(call, err.code or "upstream_error")
            raise err
        if call.stream:
            conv = adapter.stream_converter(call.model, channel.upstream_model(call.model), call.include_usage,
                                            channel)
            await relay_stream(call, resp, send, receive, conv)
        else:
            await relay_whole(call, resp, send)
    finally:
        resp.release()


async def _read_safely(resp: aiohttp.ClientResponse) -> bytes:
    try:
        return await resp.read()
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return b""


async def relay_whole(call: Call, resp: aiohttp.ClientResponse, send: Send) -> None:
    gw, adapter = call.gw, call.adapter
    try:
        raw = await resp.read()
        out, usage = adapter.parse_response(raw, call.model)
    except GatewayError:
        gw.health.record_failure(call.channel.id)
        await finish_failed(call, "upstream_bad_response")
        raise
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        gw.health.record_failure(call.channel.id)
        await finish_failed(call, "upstream_error")
        raise upstream_failure(exc) if not isinstance(exc, ValueError) else GatewayError(
            502, "The upstream returned a malformed completion.", type="upstream_error",
            code="upstream_bad_response") from None
    gw.health.record_success(call.channel.id)
    if usage is None:
        usage = counted_usage(call, completion_text(orjson.loads(out)))
    await respond_charged(call, usage, out, send)


async def respond_charged(call: Call, usage: Usage, body: bytes, send: Send) -> None:
    """A whole (non-streamed) answer: settle first, then send it with the cost it was charged."""
    charged = await finish_ok(call, usage)
    call.headers.append((b"x-reapi-cost-usd", format_usd(charged).encode()))
    metrics.observe_request(call.model, call.group, 200, upstream_s=time.perf_counter() - call.started,
                            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                            cost_nano=charged)
    await send_bytes(send, 200, body, call.headers)


async def relay_stream(call: Call, resp: aiohttp.ClientResponse, send: Send, receive: Receive,
                       conv: StreamConverter, *, raw_lines: bool = False, end: Callable[[], bytes] | None = None,
                       error_event: Callable[[GatewayError, str], bytes] = sse_error) -> None:
    """Relay one upstream SSE stream through `conv`, then settle or release: both routes' streams.

    `conv` gets the payload of each upstream `data:` line (a reapi.relay.base.StreamConverter) or, with
    raw_lines, every upstream line as it came (reapi.api.messages.EventRelay). What it returns is sent
    at once; it ends the relay by setting `finished`, or by raising GatewayError for an upstream error.
    A watcher closes the upstream response the moment the client disconnects. Then, one of:
    - client gone: charged the prompt and what was produced (usage_so_far), status client_closed;
    - failure (error, broken stream, or an end without `finished` nor usage): the hold released and
      `error_event(err, request_id)` sent as the last event;
    - success: settled on the upstream's usage (else our count) BEFORE the terminator is sent, so once
      the client sees it the books agree. The terminator is `end()`, by default OpenAI's [DONE].
    """
    gw = call.gw
    gone = asyncio.Event()

    async def watch() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()
        resp.close()  # cancel the upstream request at once: its socket closes now

    watcher = asyncio.get_running_loop().create_task(watch())
    await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + call.headers})
    call.streaming = True
    feed = conv.feed
    ttft = None
    failure: GatewayError | None = None
    try:
        async for line in resp.content:
            if raw_lines:
                events = feed(line)
            elif line[:5] == b"data:":
                events = feed(line[5:].strip())
            else:
                continue
            if events:
                if ttft is None:
                    ttft = time.perf_counter() - call.started
                await send({"type": "http.response.body", "body": b"".join(events), "more_body": True})
            if conv.finished:
                break
    except GatewayError as exc:
        failure = exc
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        failure = upstream_failure(exc)
    finally:
        watcher.cancel()

    if gone.is_set():
        # The client left: charge the prompt and what was produced so far (README "Billing").
        usage = usage_so_far(call, conv)
        charged = await finish_ok(call, usage, status="client_closed")
        metrics.observe_request(call.model, call.group, 499, ttft_s=ttft, prompt_tokens=usage.prompt_tokens,
                                completion_tokens=usage.completion_tokens, cost_nano=charged)
        return
    if failure is None and not conv.finished and conv.usage is None:
        failure = stream_ended()
    if failure is not None:
        gw.health.record_failure(call.channel.id)
        await finish_failed(call, failure.code or "upstream_error")
        call.status = failure.status
        metrics.observe_request(call.model, call.group, failure.status, ttft_s=ttft)
        await send({"type": "http.response.body", "body": error_event(failure, call.request_id)})
        return
    gw.health.record_success(call.channel.id)
    usage = conv.usage or counted_usage(call, conv.produced_text())
    charged = await finish_ok(call, usage)  # settle before the terminator: once the client sees it, the books agree
    metrics.observe_request(call.model, call.group, 200, upstream_s=time.perf_counter() - call.started,
                            ttft_s=ttft, prompt_tokens=usage.prompt_tokens,
                            completion_tokens=usage.completion_tokens, cost_nano=charged)
    await send({"type": "http.response.body", "body": DONE if end is None else end()})


async def chat_completions(gw: Gateway, scope: dict, receive: Receive, send: Send) -> None:
    call = Call(gw, new_request_id())
    try:
        await admit(call, scope, receive)
    except GatewayError as err:
        metrics.observe_request(getattr(call, "model", "") or "", getattr(call, "group", "") or "", err.status)
        log.info("%s refused %d %s", call.request_id, err.status, err.code)
        await send_error(send, err, call.headers)
        return
    except ClientGone:
        return
    except Exception:
        log.exception("%s failed inside the gateway before the hold", call.request_id)
        await send_error(send, INTERNAL_ERROR, call.headers)
        return
    # From here money is held: every path below settles or releases it.
    try:
        await relay_once(call, send, receive)
    except GatewayError as err:
        metrics.observe_request(call.model, call.group, err.status)
        log.warning("%s upstream channel=%d failed %d %s", call.request_id, call.channel.id, err.status, err.code)
        await send_error(send, err, call.headers)
    except Exception:
        log.exception("%s failed inside the gateway", call.request_id)
        await finish_failed(call, "internal_error")
        if call.streaming:
            await send({"type": "http.response.body", "body": sse_error(INTERNAL_ERROR, call.request_id)})
        else:
            await send_error(send, INTERNAL_ERROR, call.headers)
