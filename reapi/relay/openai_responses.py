"""The Responses API (`POST /v1/responses`) on `openai` channels: the body passes through.

The request goes upstream as the client sent it, minus our `group`, with the channel's upstream model
name and, when billing lowered it, `max_output_tokens`. `store` and every other field are left alone.
A whole answer is relayed as bytes (re-dumped only when its model or usage must change); a stream is
relayed event by event (`event:` and `data:` lines as they came, `sequence_number` intact, no [DONE]),
with only the events that carry a whole response (response.created/queued/in_progress and the terminal
response.completed/incomplete/failed) and `error` events parsed: usage comes from the terminal event,
which is held back until the call is settled (`end()`). Delta payloads are kept and parsed only if the
client leaves early (`produced_text()`).

Response ids (recorded so stored-response routes find their channel) are accepted only when short and
plain (`valid_response_id`). Adapters do no I/O.
"""
from __future__ import annotations

import re

import orjson

from reapi.catalog import Channel
from reapi.errors import GatewayError
from reapi.relay.base import StreamConverter, UpstreamRequest, Usage
from reapi.relay.openai import map_openai_error
from reapi.relay.scrub import safe_param, scrub
from reapi.relay.usage import responses_usage

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
_TERMINAL_B = tuple(t.encode() for t in TERMINAL)
# Events that carry a whole response object: parsed (model set back, id and usage read).
_RESPONSE_EVENTS = frozenset({b"response.created", b"response.queued", b"response.in_progress", *_TERMINAL_B})
_DELTAS = frozenset({b"response.output_text.delta", b"response.function_call_arguments.delta",
                     b"response.reasoning_text.delta", b"response.reasoning_summary_text.delta",
                     b"response.refusal.delta", b"response.custom_tool_call_input.delta"})
# The statuses a response ends in (a background one too).
FINAL_STATUSES = frozenset({"completed", "incomplete", "failed", "cancelled"})


def valid_response_id(value: object) -> str | None:
    """A response id fit to record and route on: 1-128 characters of [A-Za-z0-9_-]; else None."""
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def bad_response() -> GatewayError:
    return GatewayError(502, "The upstream returned a malformed response. The call was not charged.",
                        type="upstream_error", code="upstream_bad_response")


def failed_response(channel: Channel | None, response: dict | None = None) -> GatewayError:
    """A response the upstream reports as `failed` before producing any output: not charged."""
    err = response.get("error") if isinstance(response, dict) else None
    message = err.get("message") if isinstance(err, dict) else None
    if not isinstance(message, str) or not message:
        message = "The upstream failed to produce a response."
    return GatewayError(502, scrub(message, channel) + " The call was not charged.", type="upstream_error",
                        code="upstream_response_failed")


def stream_error(ev: dict, channel: Channel | None) -> GatewayError:
    """An `error` event inside a Responses stream -> the error the client sees (502, scrubbed)."""
    message = ev.get("message")
    if not isinstance(message, str) or not message:
        message = "The upstream failed mid-stream."
    return GatewayError(502, scrub(message, channel), type="upstream_error", code="upstream_stream_error",
                        param=safe_param(ev.get("param"), channel))


def error_event(err: GatewayError, seq: int) -> bytes:
    """An error as the last event of a Responses stream: OpenAI's `error` event (code, message, param), with
    the next sequence number; `code` is ours (e.g. upstream_stream_error). It also carries our error
    envelope's `error` object, on which the openai SDK raises APIError as it does for chat streams."""
    data = {"type": "error", "code": err.code, "message": err.message, "param": err.param, "sequence_number": seq,
            "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}}
    return b"event: error\ndata: " + orjson.dumps(data) + b"\n\n"


def _loads(data: bytes):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


def output_text(response: dict) -> str:
    """The text a whole response produced (message text, refusals, function call names and arguments,
    reasoning summaries): what is counted when the upstream reports no usage."""
    parts: list[str] = []
    output = response.get("output")
    for item in output if isinstance(output, list) else ():
        if not isinstance(item, dict):
            continue
        for k in ("name", "arguments", "input"):
            if isinstance(item.get(k), str):
                parts.append(item[k])
        for key in ("content", "summary"):
            seq = item.get(key)
            for part in seq if isinstance(seq, list) else ():
                if isinstance(part, dict):
                    parts += [part[k] for k in ("text", "refusal") if isinstance(part.get(k), str)]
    return "".join(parts)


def has_output(response: dict) -> bool:
    """Whether a response produced anything a client can use: text, a refusal or a tool call (reasoning
    alone does not count)."""
    return bool(output_text(response))


class Whole:
    """A whole (non-streamed) response as parse_response read it."""

    __slots__ = ("body", "usage", "id", "status", "text", "output")

    def __init__(self, body: bytes, usage: Usage | None, rid: str | None, status: str | None, text: str,
                 output: bool) -> None:
        self.body, self.usage, self.id, self.status, self.text, self.output = body, usage, rid, status, text, output


def parse_whole(raw: bytes, public_model: str) -> Whole:
    """A 2xx upstream body (a create, retrieve or cancel answer) -> what billing and the record need. The
    body is returned with `model` set back to the client's name and a discarded usage removed."""
    obj = _loads(raw)
    if not isinstance(obj, dict) or obj.get("object") != "response" or not isinstance(obj.get("output", []), list):
        raise bad_response()
    status = obj.get("status")
    status = status if isinstance(status, str) else None
    usage = responses_usage(obj.get("usage"))
    dirty = public_model and obj.get("model") != public_model
    if usage is None and obj.get("usage") is not None:
        obj["usage"] = None  # discarded: billed on our count, as if the upstream had reported none
        dirty = True
    if dirty:
        if public_model:
            obj["model"] = public_model
        raw = orjson.dumps(obj)
    return Whole(raw, usage, valid_response_id(obj.get("id")), status, output_text(obj), has_output(obj))


class ResponsesStream(StreamConverter):
    """A Responses event stream passed through for relay_stream(raw_lines=True), fed every upstream line.

    An event goes on once its blank line arrives, byte for byte except `model` in the events that carry
    the response; the terminal event is held back (`end()`) until the bill is settled. An `error` event
    raises (the relay releases the hold and ends with our `error` event); response.failed before any
    output delta raises too (nothing charged; `end()` then sends the failed event itself)."""

    __slots__ = ("model", "channel", "usage", "finished", "deltas", "event", "pending", "last", "seq",
                 "response_id", "on_id", "failed", "created_model")

    def __init__(self, model: str, channel: Channel, on_id=None) -> None:
        self.model = model
        self.channel = channel
        self.usage: Usage | None = None
        self.finished = False
        self.deltas: list[bytes] = []  # delta payloads, parsed only if the client leaves early
        self.event = b""
        self.pending: list[bytes] = []
        self.last = b""  # the terminal event, sent by end() once settled
        self.seq = -1  # the last sequence_number seen in a parsed event (deltas: counted)
        self.response_id: str | None = None
        self.on_id = on_id  # called once with the response id from the first event that carries it
        self.failed = b""  # a response.failed event that came before any output

    def feed(self, line: bytes) -> list[bytes] | None:
        if not line.strip():
            pending = self.pending
            if not pending:
                return None
            pending.append(line)
            self.pending, event = [], self.event
            self.event = b""
            if event in _TERMINAL_B:
                self.last = b"".join(pending)
                return None
            self.seq += 1
            return pending
        if line[:6] == b"event:":
            self.event = line[6:].strip()
        elif line[:5] == b"data:":
            if self.event in _DELTAS:
                if b'"' + self.event + b'"' not in line:
                    self._check(line)
                self.deltas.append(line[5:])
            elif self.event in _RESPONSE_EVENTS or self.event == b"error" or not self.event:
                line = self._parse(line)
            elif b'"' + self.event + b'"' not in line:  # not the event it says it is (e.g. not JSON)
                self._check(line)
        elif line[:1] != b":":  # an id: or retry: line, or anything else: not part of this protocol
            return None
        self.pending.append(line)
        return None

    def _check(self, line: bytes) -> None:
        ev = _loads(line[5:])
        if not isinstance(ev, dict) or ev.get("type") != self.event.decode("latin-1"):
            raise bad_response()

    def _parse(self, line: bytes) -> bytes:
        ev = _loads(line[5:])
        if not isinstance(ev, dict) or not isinstance(ev.get("type"), str):
            raise bad_response()
        kind = ev["type"]
        if not self.event:  # a data line with no event: line: named, so clients see its type
            self.event = kind.encode()
            self.pending.append(b"event: " + self.event + b"\n")
            if self.event in _DELTAS:
                self.deltas.append(line[5:])
                return line
        elif kind != self.event.decode("latin-1"):
            raise bad_response()
        seq = ev.get("sequence_number")
        if type(seq) is int and seq > self.seq:
            self.seq = seq - 1  # feed() counts it when the event ends
        if kind == "error":
            raise stream_error(ev, self.channel)
        response = ev.get("response")
        if self.event not in _RESPONSE_EVENTS:
            return line
        if not isinstance(response, dict):
            raise bad_response()
        if self.response_id is None:
            self.response_id = valid_response_id(response.get("id"))
            if self.response_id is not None and self.on_id is not None:
                self.on_id(self.response_id)
        dirty = response.get("model") != self.model
        if self.event in _TERMINAL_B:
            self.finished = True
            raw_usage = response.get("usage")
            self.usage = responses_usage(raw_usage)
            if self.usage is None and raw_usage is not None:
                response["usage"] = None  # discarded: the client does not see the upstream's numbers
                dirty = True
            if kind == "response.failed" and not self.deltas and not has_output(response):
                self.usage = None
                if dirty:
                    response["model"] = self.model
                    line = b"data: " + orjson.dumps(ev) + b"\n"
                self.failed = b"event: response.failed\n" + line + b"\n"
                raise failed_response(self.channel, response)
        if dirty:
            response["model"] = self.model
            line = b"data: " + orjson.dumps(ev) + b"\n"
        return line

    def end(self) -> bytes:
        """The last bytes to send once settled: the terminal event (or what was left of an event)."""
        return self.last or (b"".join(self.pending) + b"\n" if self.pending else b"")

    def error_event(self, err: GatewayError, request_id: str) -> bytes:
        """The stream's last event after a failure: the upstream's own response.failed when that was the
        failure, else our `error` event numbered after the last event relayed."""
        return self.failed or error_event(err, self.seq + 1)

    def produced_text(self) -> str:
        parts: list[str] = []
        for raw in self.deltas:
            ev = _loads(raw)
            if isinstance(ev, dict) and isinstance(ev.get("delta"), str):
                parts.append(ev["delta"])
        return "".join(parts)


class ResponsesAdapter:
    """Builds the upstream request of a Responses call on an `openai` channel, reads its answer (the
    interface reapi.proxy.responses relays through; reapi.relay.anthropic.responses is the Claude one)
    and maps its errors."""

    tokenizer_family = "openai"
    requires_max_tokens = False
    stores = True  # response ids are recorded: the stored-response routes reach them
    raw_lines = True  # the stream converter is fed every upstream line

    def parse_whole(self, raw: bytes, public_model: str, body: dict) -> Whole:
        return parse_whole(raw, public_model)

    def stream_converter(self, public_model: str, channel: Channel, body: dict, on_id=None) -> ResponsesStream:
        return ResponsesStream(public_model, channel, on_id)

    def build_request(self, channel: Channel, body: dict, upstream_model: str, *, stream: bool,
                      max_tokens: int | None) -> UpstreamRequest:
        out = dict(body)
        out.pop("group", None)
        out["model"] = upstream_model
        if max_tokens is not None:
            out["max_output_tokens"] = max_tokens
        return UpstreamRequest(url=channel.base_url + "/responses", headers=auth_headers(channel),
                               body=orjson.dumps(out))

    def map_error(self, status: int, raw: bytes, channel: Channel) -> GatewayError:
        return map_openai_error(status, raw, channel)


def auth_headers(channel: Channel) -> dict[str, str]:
    return {"Authorization": "Bearer " + channel.api_key, "Content-Type": "application/json"}


ADAPTER = ResponsesAdapter()

__all__ = ["ADAPTER", "FINAL_STATUSES", "ResponsesStream", "Whole", "error_event", "failed_response",
           "parse_whole", "valid_response_id"]
