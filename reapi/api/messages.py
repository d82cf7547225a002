"""POST /v1/messages: Anthropic's Messages API, for Anthropic-SDK clients (Claude Code and the like).

The body is Anthropic's, forwarded as is to an `anthropic` channel; only `model`
(the channel's upstream name) and `max_tokens` (the cap billing decided) are
rewritten. A thin route over the call pipeline (reapi.proxy), like the chat route:
admission (resolve_model, reserve), upstream.forward, stream.relay_stream (fed by
EventRelay below, ended by message_stop), settle; errors in Anthropic's shape.

- Auth: `x-api-key: KEY` (wins when both are sent) or `Authorization: Bearer KEY`.
  Group: the `x-reapi-group` header, else "default" (the body stays Anthropic's).
- Routing: only channels of type "anthropic" serving the model in that group;
  none -> 404 not_found_error.
- Hold: prompt tokens are counted with reapi.billing.tokens (family "claude", i.e.
  o200k + 30%) on an OpenAI-style view of the body (see `_openai_view`); the hold is
  prompt + cap, cap = min(max_tokens, the model's max_output_tokens). When the
  balance pays less, place_hold lowers the cap; whatever is sent upstream below
  the client's max_tokens is announced in `x-reapi-output-cap`.
- Upstream: `{base}/v1/messages` with the channel's x-api-key, the client's
  anthropic-version (default 2023-06-01) and anthropic-beta.
- Non-stream: the upstream JSON, `model` set back to the public name.
  Stream: upstream events relayed one by one as they arrive, byte for byte
  except `model` in message_start. Usage (input + cache read + cache creation =
  prompt; output = completion) comes from message_start / message_delta; the
  bill is settled once, before message_stop is passed on.
- Upstream errors, broken streams and redirects (never followed): released, never
  charged. Client gone before any event reached it: upstream cancelled at once,
  released (client_closed, cost 0). Client gone mid-stream: upstream cancelled at
  once; charged for the prompt (upstream's message_start count when it arrived,
  else ours) plus the tokens produced. Past REAPI_MAX_REQUEST_SECONDS: as the chat
  route (reapi.proxy.upstream.Watch), a 504 timeout_error.
- Errors use Anthropic's shape `{"type":"error","error":{"type","message"},"request_id"}`
  (SSE `event: error` once a stream has started), with these types:
  400 invalid_request_error, 401 authentication_error, 402 billing_error,
  403 permission_error, 404 not_found_error, 413 request_too_large,
  429 rate_limit_error, 503 overloaded_error, 504 timeout_error, other 5xx api_error.
- Headers: x-request-id always; x-reapi-balance-usd once the hold is placed (also
  on upstream errors); x-reapi-cost-usd on a non-stream success.
"""
from __future__ import annotations

import asyncio

import aiohttp
import orjson

from reapi.api.request import read_json
from reapi.asgi import Receive, Send, bearer, header
from reapi.billing import tokens
from reapi.catalog import ApiKey, Channel
from reapi.errors import GatewayError, bad_request
from reapi.gateway import Gateway
from reapi.proxy.admission import find_key, reserve, resolve_model
from reapi.proxy.call import Call, new_request_id
from reapi.proxy.pipeline import Wire, refuse, serve
from reapi.proxy.settle import finish_failed, respond_charged
from reapi.proxy.stream import relay_stream
from reapi.proxy.upstream import Stopped, Watch, forward, stopped_early, stream_broken, stream_ended
from reapi.relay.anthropic import ANTHROPIC_VERSION, error_from_anthropic, upstream_url, usage_from_anthropic
from reapi.relay.base import StreamConverter, UpstreamRequest, Usage
from reapi.relay.registry import adapter_for
from reapi.relay.select import pick
from reapi.relay.usage import anthropic_stream_usage, anthropic_usage

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
               503: "overloaded_error", 504: "timeout_error"}
_PARSED_EVENTS = frozenset({b"message_start", b"message_delta", b"message_stop", b"error", b""})
_EVENT_NAMES = frozenset({"message_start", "content_block_start", "content_block_delta", "content_block_stop",
                          "message_delta", "message_stop", "ping", "error"})


def error_json(err: GatewayError, request_id: str) -> bytes:
    kind = ERROR_TYPES.get(err.status) or ("api_error" if err.status >= 500 else "invalid_request_error")
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": err.message}, "request_id": request_id})


def authenticate(gw: Gateway, scope: dict) -> ApiKey:
    raw = header(scope, b"x-api-key")
    secret = raw.decode("latin-1").strip() if raw else bearer(scope)
    key = find_key(gw, secret)
    if key is None:
        raise GatewayError(401, "Invalid or missing API key: send it as 'x-api-key: sk-...' "
                                "or 'Authorization: Bearer sk-...'.", code="invalid_api_key")
    return key


def validate_head(body: object) -> dict:
    """400 unless the body is an object with a model and a non-empty messages array (Messages and count_tokens)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad_request("model: Field required (a non-empty string).", param="model")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise bad_request("messages: Field required (a non-empty array).", param="messages")
    return body


def validate(body: object) -> dict:
    body = validate_head(body)
    cap = body.get("max_tokens")
    if type(cap) is not int or cap < 1:
        raise bad_request("max_tokens: Field required (an integer >= 1).", param="max_tokens")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise bad_request("stream: Input should be a valid boolean.", param="stream")
    return body


def _parts(content: object) -> object:
    """Anthropic content blocks -> OpenAI-style parts that reapi.billing.tokens counts alike."""
    if not isinstance(content, list):
        return content  # a string (anything else counts as its JSON)
    out: list = []
    for b in content:
        kind = b.get("type") if isinstance(b, dict) else None
        source = b.get("source") if kind in ("image", "document") else None
        if kind == "image":
            out.append({"type": "image_url"})  # a fixed IMAGE_TOKENS, whatever its size
        elif kind == "document" and isinstance(source, dict) and source.get("type") == "base64":
            out.append({"type": "file", "file": {"file_data": source.get("data")}})  # by length
        elif kind == "tool_use":
            out += [b.get("name"), b.get("input")]  # the name, and the input as compact JSON
        elif kind == "tool_result":
            inner = _parts(b.get("content"))
            out += inner if isinstance(inner, list) else [inner]
        elif kind == "thinking":
            out.append(b.get("thinking"))
        else:
            out.append(b)  # text blocks as text; anything else as its JSON
    return out


def _openai_view(body: dict) -> dict:
    """The Anthropic body as the OpenAI chat body tokens.count_prompt knows: `system` becomes a
    system message, each message keeps its role, its blocks map through `_parts`; tools and
    tool_choice count as their JSON (plus the chat route's tool overhead)."""
    messages = [{"role": "system", "content": _parts(body["system"])}] if body.get("system") else []
    messages += [{"role": m.get("role"), "content": _parts(m.get("content"))} if isinstance(m, dict) else m
                 for m in body["messages"]]
    return {"messages": messages, "tools": body.get("tools"), "tool_choice": body.get("tool_choice")}


async def admit(call: Call, scope: dict, receive: Receive) -> None:
    gw = call.gw
    body = await read_json(call, scope, receive, authenticate)
    key = call.key
    call.body = validate(body)
    call.model = model = body["model"]
    call.group = group = request_group(scope)
    call.stream = body.get("stream") is True
    call.include_usage = False
    call.price, tiers = resolve_model(gw, key, group, model)
    call.channel = pick(anthropic_tiers(tiers, model, group), gw.health.available)
    call.adapter = adapter_for("anthropic")
    call.prompt_tokens = await tokens.count_prompt_async(_openai_view(body), "claude")
    call.n = 1
    call.cap = call.send_cap = min(body["max_tokens"], call.price.max_output_tokens)
    await reserve(call, body["max_tokens"])  # a cap below the client's max_tokens (the model's, or the balance's)


def upstream_headers(channel: Channel, scope: dict) -> dict[str, str]:
    """The channel's key, and the client's anthropic-version (default 2023-06-01) and anthropic-beta."""
    version = header(scope, b"anthropic-version")
    headers = {"x-api-key": channel.api_key, "content-type": "application/json",
               "anthropic-version": version.decode("latin-1") if version else ANTHROPIC_VERSION}
    beta = header(scope, b"anthropic-beta")
    if beta:
        headers["anthropic-beta"] = beta.decode("latin-1")
    return headers


def anthropic_tiers(tiers: list[list[Channel]], model: str, group: str) -> list[list[Channel]]:
    """The model's channel tiers cut to `anthropic` channels; none -> 404."""
    tiers = [t for t in ([c for c in tier if c.type == "anthropic"] for tier in tiers) if t]
    if not tiers:
        raise GatewayError(404, f"The model '{model}' is not served by an Anthropic channel in group '{group}'; "
                                "/v1/messages serves Claude models only (use /v1/chat/completions).",
                           param="model", code="model_not_found")
    return tiers


def request_group(scope: dict) -> str:
    group = header(scope, b"x-reapi-group")
    return group.decode("latin-1").strip() if group else "default"


async def relay(call: Call, scope: dict, send: Send, receive: Receive) -> None:
    """The client's body forwarded once (model and max_tokens rewritten); the answer as is."""
    channel = call.channel
    body = {**call.body, "model": channel.upstream_model(call.model), "max_tokens": call.send_cap}
    req = UpstreamRequest(upstream_url(channel.base_url), upstream_headers(channel, scope), orjson.dumps(body))
    await forward(call, send, receive, req, relay_events if call.stream else relay_message)


async def relay_events(call: Call, resp: aiohttp.ClientResponse, send: Send, watch: Watch) -> None:
    """Anthropic's events passed through (EventRelay), message_stop held back until settled."""
    events = EventRelay(call.model, call.channel)
    await relay_stream(call, resp, send, watch, events, raw_lines=True, end=events.end, error_event=error_event)


def _bad_response() -> GatewayError:
    return GatewayError(502, "The upstream returned a malformed message. The call was not charged.",
                        type="upstream_error", code="upstream_bad_response")


async def relay_message(call: Call, resp: aiohttp.ClientResponse, send: Send, watch: Watch) -> None:
    gw = call.gw
    try:
        raw = await watch.run(resp.read())
        msg = orjson.loads(raw)
        if not isinstance(msg, dict) or (msg.get("type") != "error" and not isinstance(msg.get("content"), list)):
            raise _bad_response()
        if msg.get("type") == "error":  # an error inside a 200: mapped like an HTTP error
            e = msg["error"] if isinstance(msg.get("error"), dict) else {}
            raise error_from_anthropic(500, e.get("type"), e.get("message"), call.channel)
    except Stopped:
        await stopped_early(call, watch)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, GatewayError) as exc:
        gw.health.record_failure(call.channel.id)
        err = exc if isinstance(exc, GatewayError) else (
            _bad_response() if isinstance(exc, ValueError) else stream_broken(exc))
        await finish_failed(call, err.code or "upstream_error")
        raise err from None
    gw.health.record_success(call.channel.id)
    dirty = msg.get("model") != call.model
    usage = usage_from_anthropic(msg.get("usage"))
    if usage is None:  # none, or malformed (reapi.relay.usage): billed on our count, which the answer shows
        usage = Usage(call.prompt_tokens, tokens.count_completion(_produced(msg.get("content"))))
        msg["usage"] = {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}
        dirty = True
    if dirty:
        msg["model"] = call.model
        raw = orjson.dumps(msg)
    await respond_charged(call, usage, raw, send)


def _produced(blocks: object) -> str:
    """The text of content blocks or stream deltas: text, thinking and tool input JSON."""
    out = []
    for b in blocks if isinstance(blocks, list) else ():
        if isinstance(b, dict):
            text = b.get("text") or b.get("thinking") or b.get("partial_json")
            out.append(text if isinstance(text, str) else orjson.dumps(b["input"]).decode() if "input" in b else "")
    return "".join(out)


def _delta(data: bytes) -> dict | None:
    try:
        return orjson.loads(data).get("delta")
    except (ValueError, AttributeError):
        return None


def error_event(err: GatewayError, request_id: str) -> bytes:
    return b"event: error\ndata: " + error_json(err, request_id) + b"\n\n"


class EventRelay(StreamConverter):
    """Anthropic's event stream passed through for chat.relay_stream(raw_lines=True), fed every upstream line.

    An event goes on once its blank line arrives, byte for byte except `model` in message_start;
    message_stop is held back (`end()`) until the bill is settled. Only message_start, message_delta,
    message_stop and error payloads are parsed; content_block_delta payloads are kept and parsed only
    if the client leaves early (`produced_text()`). Usage: message_start's, merged with each
    message_delta's (cumulative); message_stop before any message_delta is an early end (502)."""

    __slots__ = ("model", "channel", "usage", "finished", "started", "deltas", "event", "pending", "last",
                 "delta_seen")

    def __init__(self, model: str, channel: Channel) -> None:
        self.model = model  # the public name, set back in message_start
        self.channel = channel
        self.usage: Usage | None = None  # set at message_delta
        self.finished = False  # message_stop arrived
        self.started: dict = {}  # message_start's usage
        self.deltas: list[bytes] = []  # content_block_delta payloads
        self.event = b""  # the current event's name
        self.pending: list[bytes] = []  # the current event's lines
        self.last = b""  # message_stop
        self.delta_seen = False  # a message_delta arrived (its usage may still have been discarded)

    def feed(self, line: bytes) -> list[bytes] | None:
        if not line.strip():  # a blank line ends an event: pass it on now
            pending = self.pending
            if not pending:
                return None
            pending.append(line)
            if self.event == b"message_stop":
                if not self.delta_seen:
                    raise stream_ended()
                self.last = b"".join(pending)
                self.finished = True
                return None
            self.pending, self.event = [], b""
            return pending
        if line[:6] == b"event:":
            self.event = line[6:].strip()
        elif line[:5] == b"data:":
            if self.event == b"content_block_delta":
                if b'"content_block_delta"' not in line:  # cheap: every real one names its type
                    self._check(line)
                self.deltas.append(line[5:])
            elif self.event in _PARSED_EVENTS:
                line = self._parse(line)
            elif b'"' + self.event + b'"' not in line:  # not the event it says it is (e.g. not JSON)
                self._check(line)
        self.pending.append(line)
        return None

    def _parse(self, line: bytes) -> bytes:
        """A parsed event's data line: usage noted, errors raised; returned with the model set back."""
        try:
            ev = orjson.loads(line[5:])
            kind = ev.get("type") if isinstance(ev, dict) else None
            if not self.event:
                # A data line with no `event:` line: name it, or the SDKs ignore it (an unnamed SSE
                # event is a "message"). Only Anthropic's own event names pass.
                if kind not in _EVENT_NAMES:
                    raise _bad_response()
                self.event = kind.encode()
                self.pending.append(b"event: " + self.event + b"\n")
            elif kind != self.event.decode("latin-1"):
                kind = "error" if self.event == b"error" else None
                if kind is None:
                    raise _bad_response()
            if kind == "message_start":
                msg = ev.get("message")
                msg = msg if isinstance(msg, dict) else {}
                usage = msg.get("usage")
                self.started = dict(usage) if isinstance(usage, dict) else {}
                if msg and msg.get("model") != self.model:
                    msg["model"] = self.model
                    line = b"data: " + orjson.dumps(ev) + b"\n"
            elif kind == "message_delta":
                self.delta_seen = True
                self.usage = usage = anthropic_stream_usage(self.started, ev.get("usage"))
                if usage is None and ev.get("usage") is not None:
                    # Discarded: the client sees the output count it is billed on, not the upstream's numbers.
                    ev["usage"] = {"output_tokens": tokens.count_completion(self.produced_text())}
                    line = b"data: " + orjson.dumps(ev) + b"\n"
            elif kind == "content_block_delta":
                self.deltas.append(line[5:])
            elif kind == "error":
                # Mapped like an HTTP error: scrubbed, the channel's auth -> 502.
                err = ev.get("error") if isinstance(ev, dict) else None
                err = err if isinstance(err, dict) else {"message": err}
                raise error_from_anthropic(500, err.get("type"), err.get("message"), self.channel)
        except ValueError:
            raise _bad_response() from None
        return line

    def _check(self, line: bytes) -> None:
        """A relayed-as-is data line that does not name its event: it must be that event's JSON object."""
        try:
            ev = orjson.loads(line[5:])
        except ValueError:
            raise _bad_response() from None
        if not isinstance(ev, dict) or ev.get("type") != self.event.decode("latin-1"):
            raise _bad_response()

    def end(self) -> bytes:
        """The last bytes to send, once settled: message_stop, or what was left of an unfinished event."""
        return self.last or (b"".join(self.pending) + b"\n" if self.pending else b"")

    def input_usage(self) -> Usage | None:
        """message_start's usage (the prompt as Anthropic counted it), completion_tokens 0; None if none came."""
        return anthropic_usage(self.started, prompt_only=True) if self.started else None

    def produced_text(self) -> str:
        return _produced([_delta(d) for d in self.deltas])


WIRE = Wire(body=error_json, event=error_event)


async def messages(gw: Gateway, scope: dict, receive: Receive, send: Send) -> None:
    if scope["path"].rstrip("/") == "/v1/messages/count_tokens":
        from reapi.api.count_tokens import count_tokens  # not on the chat path: imported on its first call
        return await count_tokens(gw, scope, receive, send)
    call = Call(gw, new_request_id())
    if scope["path"].rstrip("/") != "/v1/messages":
        return await refuse(send, call, WIRE, GatewayError(404, f"Unknown route {scope['path']}.",
                                                           code="unknown_url"))
    if scope["method"] != "POST":
        return await refuse(send, call, WIRE, GatewayError(405, "Use POST for /v1/messages.",
                                                           code="method_not_allowed"))
    await serve(call, WIRE, admit, relay, scope, receive, send)
