"""POST /v1/chat/completions, the hot path: a thin route over the call pipeline (reapi.proxy).

One request flows one way: auth -> parse and validate -> route -> count -> limits
-> hold -> relay -> settle -> response. This module parses and validates the OpenAI
body, picks the channel and its adapter, decides the output cap and hands the call
to reapi.proxy: the adapter builds the upstream request, the OpenAI stream ends with
[DONE], errors are OpenAI's envelope. Nothing here queries the store.
"""
from __future__ import annotations

import aiohttp

from reapi.api.request import read_json
from reapi.api.validation import validate_chat
from reapi.asgi import Receive, Send
from reapi.billing import tokens
from reapi.errors import GatewayError
from reapi.gateway import Gateway
from reapi.proxy.admission import authenticate, reserve, resolve_model  # noqa: F401 (authenticate: re-export)
from reapi.proxy.call import Call, new_request_id
from reapi.proxy.pipeline import Wire, serve
from reapi.proxy.settle import finish_failed
from reapi.proxy.stream import relay_stream, relay_whole, sse_error
from reapi.proxy.upstream import Watch, forward
from reapi.relay.registry import adapter_for
from reapi.relay.select import pick

WIRE = Wire(body=lambda err, request_id: err.body(), event=sse_error)


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
    call.channel = pick(tiers, gw.health.available)
    call.adapter = adapter = adapter_for(call.channel.type)
    call.prompt_tokens = await tokens.count_prompt_async(body, adapter.tokenizer_family)

    price = call.price
    requested = client_cap(body)
    call.cap = min(requested, price.max_output_tokens) if requested else price.max_output_tokens
    call.n = body.get("n") or 1
    if requested or adapter.requires_max_tokens:
        call.send_cap = call.cap  # the cap the hold is computed on is the one cap sent upstream
    await reserve(call, call.cap)


def client_cap(body: dict) -> int | None:
    """The output cap the client asked for: the smaller of max_completion_tokens and max_tokens when both
    are given (the hold is computed on it, and only it goes upstream, under the client's field name)."""
    caps = [c for c in (body.get("max_completion_tokens"), body.get("max_tokens")) if c]
    return min(caps) if caps else None


async def relay(call: Call, scope: dict, send: Send, receive: Receive) -> None:
    """The adapter's upstream request, forwarded once; the answer as a stream or a whole completion."""
    channel, adapter = call.channel, call.adapter
    try:
        req = adapter.build_request(channel, call.body, channel.upstream_model(call.model), stream=call.stream,
                                    max_tokens=call.send_cap)
    except GatewayError as err:  # a parameter this provider cannot honour: nothing was sent, release
        await finish_failed(call, err.code or "invalid_request")
        raise
    await forward(call, send, receive, req, relay_converted if call.stream else relay_whole)


async def relay_converted(call: Call, resp: aiohttp.ClientResponse, send: Send, watch: Watch) -> None:
    """The upstream stream through the adapter's converter, ended by [DONE]."""
    channel = call.channel
    conv = call.adapter.stream_converter(call.model, channel.upstream_model(call.model), call.include_usage,
                                         channel)
    await relay_stream(call, resp, send, watch, conv)


async def chat_completions(gw: Gateway, scope: dict, receive: Receive, send: Send) -> None:
    await serve(Call(gw, new_request_id()), WIRE, admit, relay, scope, receive, send)
