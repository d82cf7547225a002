"""/v1/responses: OpenAI's Responses API, a thin route over the call pipeline (reapi.proxy).

POST /v1/responses is a call like chat's: auth, validation (reapi.api.responses_validation), model and
pool, limits, the hold (prompt counted with reapi.billing.tokens.count_responses_prompt plus
`max_output_tokens`, else the model's cap), one upstream POST through the `openai` channel's Responses
adapter (reapi.relay.openai_responses: the body as sent, minus `group`), then settlement
(reapi.proxy.responses). `previous_response_id` routes the call to the channel that made that response.
On `anthropic` channels the request and its answer are translated (reapi.relay.anthropic.responses) and
nothing is stored: their ids (resp_claude_...) answer 404 response_not_stored on the stored routes.

GET|DELETE /v1/responses/{id}, POST /v1/responses/{id}/cancel and GET /v1/responses/{id}/input_items
are free (no hold, no rate limit) and need a chat key: the id must have been recorded for the key's
account (else 404, and nothing reaches any upstream); they go to the channel that made it.
"""
from __future__ import annotations

import logging

import orjson

from reapi.api.request import read_json
from reapi.api.responses_validation import validate_responses
from reapi.asgi import Receive, Send, send_bytes
from reapi.billing import tokens
from reapi.errors import INTERNAL_ERROR, GatewayError, bad_request
from reapi.gateway import Gateway
from reapi.proxy import responses as flow
from reapi.proxy.admission import authenticate, reserve, resolve_model
from reapi.proxy.call import Call, new_request_id
from reapi.proxy.pipeline import Wire, log_request, refuse, send_error, serve
from reapi.proxy.settle import finish_failed
from reapi.proxy.upstream import forward
from reapi.relay.anthropic.responses import ADAPTER as CLAUDE_ADAPTER
from reapi.relay.anthropic.responses import CLAUDE_ID_PREFIX
from reapi.relay.openai import map_openai_error
from reapi.relay.openai_responses import ADAPTER, error_event, parse_whole, valid_response_id
from reapi.relay.scrub import redact_output
from reapi.relay.select import pick

log = logging.getLogger("reapi.requests")

WIRE = Wire(body=lambda err, request_id: err.body(), event=lambda err, request_id: error_event(err, 0))

# Channel types that answer /v1/responses, with their adapter (openai: passed through; anthropic: translated).
ADAPTERS = {"openai": ADAPTER, "anthropic": CLAUDE_ADAPTER}


def not_found(rid: str, param: str | None = None, code: str = "response_not_found") -> GatewayError:
    return GatewayError(404, f"No response with id '{rid[:128]}' was found.", type="invalid_request_error",
                        param=param, code=code, headers={"x-should-retry": "false"})


async def admit(call: Call, scope: dict, receive: Receive) -> None:
    gw = call.gw
    body = await read_json(call, scope, receive)
    validate_responses(body)
    call.body = body
    call.model = model = body["model"]
    call.group = group = body.get("group") or "default"
    call.stream = body.get("stream") is True
    call.include_usage = False
    call.ext = flow.Extra(store=body.get("store") is not False, background=body.get("background") is True)
    call.price, tiers = resolve_model(gw, call.key, group, model)
    previous = body.get("previous_response_id")
    if previous is not None and not any(ADAPTERS[c.type].stores for tier in tiers for c in tier if c.type in ADAPTERS):
        raise bad_request(f"previous_response_id is not supported on model '{model}' (Claude): this gateway keeps "
                          "nothing of its responses; send the whole conversation in `input`.",
                          "previous_response_id", "unsupported_parameter")
    if previous is not None:
        stored = await flow.find_stored(gw, call.key.account_id, previous) if valid_response_id(previous) else None
        if stored is None:
            raise not_found(previous, "previous_response_id", "previous_response_not_found")
        channel = next((c for tier in tiers for c in tier if c.id == stored.channel_id), None)
        if channel is None:
            raise bad_request("'previous_response_id' was made by a channel that does not serve this model in this "
                              "group; start a new conversation or use its model and group.",
                              "previous_response_id", "invalid_value")
        call.channel = channel
    else:
        served = [[c for c in tier if c.type in ADAPTERS] for tier in tiers]
        served = [tier for tier in served if tier]
        if not served:
            raise bad_request(f"The Responses API is not available for model '{model}' on this gateway yet; "
                              "use /v1/chat/completions.", "model", "unsupported_parameter")
        call.channel = pick(served, gw.health.available)
    if call.channel.type not in ADAPTERS:
        raise bad_request(f"The Responses API is not available for model '{model}' on this gateway yet.",
                          "model", "unsupported_parameter")
    call.adapter = adapter = ADAPTERS[call.channel.type]
    if not adapter.stores:
        call.ext.store = False  # nothing is recorded: `store` is a no-op there
    call.prompt_tokens = await tokens.count_responses_prompt_async(body, adapter.tokenizer_family)
    price = call.price
    requested = body.get("max_output_tokens")
    call.cap = min(requested, price.max_output_tokens) if requested else price.max_output_tokens
    call.n = 1
    if requested or adapter.requires_max_tokens:
        call.send_cap = call.cap
    await reserve(call, call.cap)


async def relay(call: Call, scope: dict, send: Send, receive: Receive) -> None:
    channel = call.channel
    try:
        req = call.adapter.build_request(channel, call.body, channel.upstream_model(call.model), stream=call.stream,
                                         max_tokens=call.send_cap)
    except GatewayError as err:
        await finish_failed(call, err.code or "invalid_request")
        raise
    await forward(call, send, receive, req, flow.relay_response_stream if call.stream else flow.relay_whole_response)


async def create(gw: Gateway, scope: dict, receive: Receive, send: Send) -> None:
    await serve(Call(gw, new_request_id()), WIRE, admit, relay, scope, receive, send)


# --- stored responses ----------------------------------------------------------------------------

def _route(scope: dict) -> tuple[str, str, str] | GatewayError:
    """(response id, sub-route "" | "cancel" | "input_items", upstream method) of a stored-response path."""
    parts = scope["path"][len("/v1/responses/"):].split("/")
    method = scope["method"]
    if len(parts) == 1 and parts[0]:
        allowed = ("GET", "DELETE")
        sub = ""
    elif len(parts) == 2 and parts[1] in ("cancel", "input_items") and parts[0]:
        sub = parts[1]
        allowed = ("POST",) if sub == "cancel" else ("GET",)
    else:
        return GatewayError(404, f"Unknown route {scope['path'][:200]}.", code="unknown_url")
    if method not in allowed:
        return GatewayError(405, f"Use {' or '.join(allowed)} for this route.", code="method_not_allowed")
    return parts[0], sub, method


async def stored(gw: Gateway, scope: dict, receive: Receive, send: Send) -> None:
    """GET|DELETE /v1/responses/{id}, POST .../cancel, GET .../input_items: to the channel that made it."""
    call = Call(gw, new_request_id())
    if scope["path"].rstrip("/") == "/v1/responses":
        return await refuse(send, call, WIRE, GatewayError(405, "Use POST for /v1/responses.",
                                                           code="method_not_allowed"))
    route = _route(scope)
    if isinstance(route, GatewayError):
        return await refuse(send, call, WIRE, route)
    rid, sub, method = route
    try:
        call.key = authenticate(gw, scope)
        row = await flow.find_stored(gw, call.key.account_id, rid) if valid_response_id(rid) else None
        if row is None and rid.startswith(CLAUDE_ID_PREFIX):
            raise GatewayError(404, f"The response '{rid[:128]}' was made on a Claude model; this gateway does not "
                                    "store those, so it cannot be retrieved, deleted, cancelled or listed.",
                               type="invalid_request_error", code="response_not_stored",
                               headers={"x-should-retry": "false"})
        if row is None:
            raise not_found(rid)
        call.model, call.channel = row.model, gw.catalog.snapshot.channels.get(row.channel_id)
        key = call.key
        if key.models is not None and row.model not in key.models:
            raise GatewayError(403, f"This API key may not use model '{row.model}'.", type="permission_error",
                               param="model", code="model_not_allowed")
        if call.channel is None or not call.channel.enabled:
            raise GatewayError(404, f"The response '{rid}' was made by a channel this gateway no longer serves.",
                               type="invalid_request_error", code="response_not_found",
                               headers={"x-should-retry": "false"})
        query = scope.get("query_string", b"").decode("latin-1")
        if sub == "" and method == "GET" and "stream=true" in query.replace("%3D", "=").lower():
            raise bad_request("Streaming a stored response is not supported by this gateway; retrieve it whole.",
                              "stream", "invalid_value")
        if method == "DELETE":
            await flow.settle_before_delete(gw, row, call.channel)
        path = f"/responses/{rid}" + (f"/{sub}" if sub else "")
        status, raw = await flow.forward_stored(gw, call.channel, method, path, b"{}" if method == "POST" else b"",
                                                query)
        if status >= 300:
            raise map_openai_error(status, raw, call.channel)
        body = raw
        if sub == "input_items" or method == "DELETE":
            _json_object(raw)
            if method == "DELETE":
                await flow.forget_stored(gw, key.account_id, rid)
        else:  # a retrieve or a cancel: the response itself, which may end a background one
            whole = parse_whole(raw, row.model)
            await flow.settle_background(gw, row, whole)
            body = whole.body
        call.status = 200
        await send_bytes(send, 200, redact_output(body, call.channel), call.headers)
    except GatewayError as err:
        call.status, call.code = err.status, err.code or ""
        await send_error(send, call, WIRE, err)
    except Exception:
        log.exception("%s failed inside the gateway", call.request_id)
        call.status, call.code = 500, "internal_error"
        await send_error(send, call, WIRE, INTERNAL_ERROR)
    finally:
        log_request(call)


def _json_object(raw: bytes) -> dict:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    if not isinstance(obj, dict):
        raise GatewayError(502, "The upstream returned a malformed answer.", type="upstream_error",
                           code="upstream_bad_response")
    return obj

