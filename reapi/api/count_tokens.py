"""POST /v1/messages/count_tokens: Anthropic's token counting (the anthropic SDK's `messages.count_tokens`).

Authenticated and routed like /v1/messages (x-api-key or Bearer; `x-reapi-group`; the key's group and
model allow-lists; model aliases; only `anthropic` channels serving the model), then forwarded once to
the channel's own `/v1/messages/count_tokens` with `model` set to the channel's upstream name. It is free:
no hold, no usage row, no rate-limit admission (it is not a call). It is bounded like one: the body by
REAPI_MAX_BODY_BYTES, the whole exchange by REAPI_MAX_REQUEST_SECONDS (a client that leaves abandons it),
the upstream's answer by ANSWER_LIMIT bytes, and that answer must be `{"input_tokens": N}` with N an
integer in 0..MAX_COUNT, else 502 upstream_bad_response. The client gets `{"input_tokens": N}` only.
Errors in Anthropic's envelope (reapi.api.messages.WIRE); upstream errors mapped and scrubbed like
/v1/messages'. Imported on the route's first call, never by the chat path.
"""
from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson

from reapi.api.messages import (WIRE, anthropic_tiers, authenticate, request_group, upstream_headers,
                                validate_head)
from reapi.api.request import read_json
from reapi.asgi import ClientGone, Receive, Send, send_bytes
from reapi.errors import INTERNAL_ERROR, GatewayError
from reapi.gateway import Gateway
from reapi.proxy.admission import resolve_model
from reapi.proxy.call import Call, new_request_id
from reapi.proxy.pipeline import log_request, refuse, send_error
from reapi.proxy.upstream import Stopped, Watch, redirected, too_long, upstream_failure
from reapi.relay.anthropic import ADAPTER, count_tokens_url
from reapi.relay.select import pick

log = logging.getLogger("reapi.requests")

ANSWER_LIMIT = 64 * 1024  # bytes of the upstream's answer read at most (a real one is ~20)
MAX_COUNT = 2**31 - 1  # the largest input_tokens accepted from an upstream


def validate(body: object) -> dict:
    return validate_head(body)


def bad_count() -> GatewayError:
    return GatewayError(502, "The upstream returned a malformed token count.", type="upstream_error",
                        code="upstream_bad_response")


def parse_count(raw: bytes) -> int:
    """`{"input_tokens": N}` from the upstream, N a non-negative integer (bools and floats refused)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_count() from None
    n = obj.get("input_tokens") if isinstance(obj, dict) else None
    if type(n) is not int or not 0 <= n <= MAX_COUNT:
        raise bad_count()
    return n


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The answer's body, refused (502) beyond `limit` bytes."""
    chunks, size = [], 0
    while chunk := await resp.content.readany():
        size += len(chunk)
        if size > limit:
            raise bad_count()
        chunks.append(chunk)
    return b"".join(chunks)


async def exchange(call: Call, scope: dict, receive: Receive) -> int:
    gw = call.gw
    body = validate(await read_json(call, scope, receive, authenticate))
    call.model = model = body["model"]
    call.group = group = request_group(scope)
    _, tiers = resolve_model(gw, call.key, group, model)
    call.channel = channel = pick(anthropic_tiers(tiers, model, group), gw.health.available)
    data = orjson.dumps({**body, "model": channel.upstream_model(model)})
    watch = Watch(call, receive)
    try:
        resp = await watch.run(gw.http.post(count_tokens_url(channel.base_url), data=data,
                                            headers=upstream_headers(channel, scope), allow_redirects=False))
        try:
            if 300 <= resp.status < 400:
                raise redirected(resp.status)
            raw = await watch.run(read_limited(resp, ANSWER_LIMIT))
            if resp.status >= 400:
                raise ADAPTER.map_error(resp.status, raw, channel)
            if resp.status != 200:
                raise bad_count()
            return parse_count(raw)
        finally:
            resp.close() if watch.stopped else resp.release()
    except Stopped:
        if watch.gone:
            raise ClientGone() from None
        raise too_long(call, charged=False) from None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        raise upstream_failure(exc) from None
    finally:
        watch.close()


async def count_tokens(gw: Gateway, scope: dict, receive: Receive, send: Send) -> None:
    call = Call(gw, new_request_id())
    if scope["method"] != "POST":
        return await refuse(send, call, WIRE, GatewayError(405, "Use POST for /v1/messages/count_tokens.",
                                                           code="method_not_allowed"))
    try:
        n = await exchange(call, scope, receive)
        await send_bytes(send, 200, b'{"input_tokens":%d}' % n, call.headers)
    except GatewayError as err:
        call.status, call.code = err.status, err.code or ""
        await send_error(send, call, WIRE, err)
    except ClientGone:
        call.status, call.code = 499, "client_closed"
    except Exception:
        log.exception("%s count_tokens failed inside the gateway", call.request_id)
        call.status, call.code = 500, "internal_error"
        await send_error(send, call, WIRE, INTERNAL_ERROR)
    finally:
        log_request(call)
