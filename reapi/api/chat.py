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
from typing import Callable, NoReturn

import aiohttp
import orjson

from reapi import metrics
from reapi.api.http import (ClientGone, Receive, Send, bearer, headers_list, read_body, send_bytes,
                            send_error)
from reapi.api.validation import check_depth, validate_chat
from reapi.billing import tokens
from reapi.billing.ledger import HoldRequest, HoldResult, Release, Settlement
from reapi.billing.money import format_usd
from reapi.billing.pricing import affordable_output, cost_nano
from reapi.catalog import ApiKey, Channel, Price
from reapi.errors import CHARGED_ERROR, INTERNAL_ERROR, UNRECORDED_ERROR, GatewayError, bad_request
from reapi.gateway import ADAPTERS, Gateway
from reapi.limits import Decision, Rule
from reapi.relay.base import StreamConverter, Usage
from reapi.relay.scrub import redact_output
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
        self.closed = ""  # "charged" or "released" once the hold's close was written
        self.streaming = False  # response headers were sent


async def read_json(call: Call, scope: dict, receive: Receive, auth=authenticate) -> object:
    """Authenticate (with the route's `auth`), then read and parse the body once."""
    call.key = auth(call.gw, scope)
    raw = await read_body(scope, receive, call.gw.settings.max_body_bytes)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.", code="invalid_json") from None
    check_depth(raw, body)
    return body


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
    call.prompt_tokens = await tokens.count_prompt_async(body, call.adapter.tokenizer_family)

    price = call.price
    requested = client_cap(body)
    call.cap = min(requested, price.max_output_tokens) if requested else price.max_output_tokens
    call.n = body.get("n") or 1
    if requested or call.adapter.requires_max_tokens:
        call.send_cap = call.cap  # the cap the hold is computed on is the one cap sent upstream
    await reserve(call, call.cap)


def client_cap(body: dict) -> int | None:
    """The output cap the client asked for: the smaller of max_completion_tokens and max_tokens when both
    are given (the hold is computed on it, and only it goes upstream, under the client's field name)."""
    caps = [c for c in (body.get("max_completion_tokens"), body.get("max_tokens")) if c]
    return min(caps) if caps else None


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
            asyncio.get_running_loop().create_task(release_orphan(call, result))

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
                   cached_tokens=usage.cached_tokens, cache_write_tokens=usage.cache_write_tokens, status=status)
    charged = await gw.writer.submit(s)
    call.closed = "charged"
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


def too_long(call: Call, charged: bool) -> GatewayError:
    """504 for a call cut at its deadline (REAPI_MAX_REQUEST_SECONDS, the whole relay included)."""
    outcome = ("It was charged for the output delivered before the cut." if charged
               else "The call was not charged.")
    return GatewayError(504, f"The call ran longer than this gateway allows "
                             f"({call.gw.settings.max_request_seconds} s) and was ended. {outcome}",
                        type="upstream_error", code="request_too_long")


def redirected(status: int) -> GatewayError:
    return GatewayError(502, f"The upstream provider answered with a redirect (HTTP {status}), which the gateway "
                             "does not follow. The call was not charged.",
                        type="upstream_error", code="upstream_bad_response")


class Stopped(Exception):
    """A wait inside Watch.run was cut short: the client left, or the call reached its deadline."""


class Watch:
    """Ends a call's relay early, from the hold to the end of the answer.

    A watcher task waits for the client's http.disconnect and a timer runs to the call's deadline
    (call.started + max_request_seconds: connect, headers and every chunk included, keep-alive bytes or
    not). Either one sets its flag (`gone`, `expired`) and, while the request is inside `run()`, cancels
    it there, so that `run` raises Stopped and the upstream request is abandoned at once. Outside `run`
    (settling, writing the money, sending the last bytes) nothing is interrupted."""

    __slots__ = ("task", "gone", "expired", "armed", "fired", "watcher", "timer")

    def __init__(self, call: Call, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.gone = self.expired = self.armed = self.fired = False
        self.watcher = loop.create_task(self._watch(receive))
        left = call.gw.settings.max_request_seconds - (time.perf_counter() - call.started)
        self.timer = loop.call_later(max(0.0, left), self._expire)

    @property
    def stopped(self) -> bool:
        return self.gone or self.expired

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone = True
        self._interrupt()

    def _expire(self) -> None:
        self.expired = True
        self._interrupt()

    def _interrupt(self) -> None:
        if self.armed and not self.fired:
            self.fired = True
            self.task.cancel()

    async def run(self, aw):
        """Await `aw` (a coroutine or aiohttp request); raise Stopped if the client leaves or the deadline
        passes first. Only the request's own task may call it."""
        if self.stopped:
            aw.close()
            raise Stopped()
        self.armed = True
        try:
            result = await aw
        except asyncio.CancelledError:
            if self.fired and self.task.uncancel() == 0:
                raise Stopped() from None
            raise  # a cancellation from outside (shutdown): not ours to absorb
        finally:
            self.armed = False
        if self.fired:  # our cancellation was swallowed inside `aw`
            self.task.uncancel()
            if hasattr(result, "close"):
                result.close()
            raise Stopped()
        return result

    def close(self) -> None:
        self.armed = False
        self.watcher.cancel()
        self.timer.cancel()


async def stopped_early(call: Call, watch: Watch) -> NoReturn:
    """The client left, or the deadline passed, before any of the answer reached the client: the hold is
    released in full (a client gone: usage status client_closed, cost 0). Raises ClientGone (nobody to
    answer) or the 504."""
    if watch.gone:
        await finish_failed(call, "client_closed", status="client_closed")
        call.status = 499
        metrics.observe_request(call.model, call.group, 499)
        raise ClientGone()
    await finish_failed(call, "request_too_long")
    raise too_long(call, charged=False)


async def upstream_post(call: Call, watch: Watch, url: str, data: bytes, headers: dict) -> aiohttp.ClientResponse:
    """The call's one upstream POST, redirects never followed; on failure the hold is released."""
    gw = call.gw
    try:
        return await watch.run(gw.http.post(url, data=data, headers=headers, allow_redirects=False))
    except Stopped:
        await stopped_early(call, watch)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        gw.health.record_failure(call.channel.id)
        err = upstream_failure(exc)
        await finish_failed(call, err.code or "upstream_error")
        raise err from None


async def upstream_error(call: Call, resp: aiohttp.ClientResponse, watch: Watch,
                         map_error: Callable[[int, bytes, Channel], GatewayError]) -> NoReturn:
    """A non-2xx upstream answer: the hold released, the error mapped (scrubbed by the adapter's
    `map_error`) and raised. A 3xx is a bad response: redirects are not followed."""
    status = resp.status
    if status < 400:
        err = redirected(status)
    else:
        try:
            raw = await watch.run(resp.read())
        except Stopped:
            await stopped_early(call, watch)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raw = b""
        err = map_error(status, raw, call.channel)
    if status < 400 or status >= 500 or status in (401, 403, 429):
        call.gw.health.record_failure(call.channel.id)
    await finish_failed(call, err.code or "upstream_error")
    raise err


async def relay_once(call: Call, send: Send, receive: Receive) -> None:
    """Exactly one upstream POST: no retry here, ever (the SDKs retry 5xx safely, as failures cost nothing)."""
    channel, adapter = call.channel, call.adapter
    try:
        req = adapter.build_request(channel, call.body, channel.upstream_model(call.model), stream=call.stream,
                                    max_tokens=call.send_cap)
    except GatewayError as err:  # a parameter this provider cannot honour: nothing was sent, release
        await finish_failed(call, err.code or "invalid_request")
        raise
    watch = Watch(call, receive)
    try:
        resp = await upstream_post(call, watch, req.url, req.body, req.headers)
        try:
            if resp.status >= 300:
                await upstream_error(call, resp, watch, adapter.map_error)
            if call.stream:
                conv = adapter.stream_converter(call.model, channel.upstream_model(call.model), call.include_usage,
                                                channel)
                await relay_stream(call, resp, send, watch, conv)
            else:
                await relay_whole(call, resp, send, watch)
        finally:
            resp.close() if watch.stopped else resp.release()
    finally:
        watch.close()


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
    await send_bytes(send, 200, redact_output(body, call.channel), call.headers)


async def send_last(send: Send, body: bytes, wait_s: float = 5.0) -> None:
    """The last bytes of a stream cut at its deadline, to a client that may not be reading: bounded."""
    try:
        await asyncio.wait_for(send({"type": "http.response.body", "body": body}), wait_s)
    except asyncio.TimeoutError:
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
        failure = upstream_failure(exc)

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
    await send({"type": "http.response.body", "body": DONE if end is None else redact_output(end(), call.channel)})


async def stream_stopped(call: Call, send: Send, watch: Watch, conv: StreamConverter, ttft: float | None,
                         error_event: Callable[[GatewayError, str], bytes]) -> None:
    """A stream the client left, or that reached its deadline (see relay_stream)."""
    if not call.streaming:
        await stopped_early(call, watch)  # nothing sent yet: released; ClientGone or a JSON 504
    if ttft is None:  # headers only: nothing of the answer was delivered, nothing is charged
        if watch.gone:
            await finish_failed(call, "client_closed", status="client_closed")
            metrics.observe_request(call.model, call.group, 499)
            return
        await finish_failed(call, "request_too_long")
        call.status = 504
        metrics.observe_request(call.model, call.group, 504)
        await send_last(send, error_event(too_long(call, charged=False), call.request_id))
        return
    # Output was delivered: charge the prompt and what was produced so far (README "Billing").
    usage = usage_so_far(call, conv)
    status, code = (499, "client_closed") if watch.gone else (504, "too_long")
    charged = await finish_ok(call, usage, status=code)
    call.status = status
    metrics.observe_request(call.model, call.group, status, ttft_s=ttft, prompt_tokens=usage.prompt_tokens,
                            completion_tokens=usage.completion_tokens, cost_nano=charged)
    if not watch.gone:
        await send_last(send, error_event(too_long(call, charged=True), call.request_id))


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
    except ClientGone:
        log.info("%s client left before the answer; released", call.request_id)
    except Exception:
        log.exception("%s failed inside the gateway", call.request_id)
        err = await fail_internal(call)
        if call.streaming:
            await send({"type": "http.response.body", "body": sse_error(err, call.request_id)})
        else:
            await send_error(send, err, call.headers)
