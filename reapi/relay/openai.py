"""The `openai` channel type: any server speaking OpenAI's Chat Completions.

Requests pass through nearly untouched (minus our `group`, plus the upstream
model name, the billing output cap and `stream_options.include_usage`, which we
always ask for so every stream can be settled on real usage). Responses are
relayed as bytes; a stream chunk is parsed only when it carries usage or an error.
"""
from __future__ import annotations

import orjson

from reapi.catalog import Channel
from reapi.errors import GatewayError
from reapi.relay.base import Adapter, StreamConverter, UpstreamRequest, Usage
from reapi.relay.scrub import safe_code, safe_param, scrub
from reapi.relay.usage import openai_usage

_MODEL_KEY = b'"model":"'


def _set_model(data: bytes, public: bytes, obj: object = None) -> bytes:
    """Make the chunk's "model" the client's model name: by byte surgery when the JSON is compact, else
    (spaces, escapes) by parsing and re-dumping the chunk; `obj` is the chunk if already parsed."""
    i = data.find(_MODEL_KEY)
    if i >= 0:
        start = i + len(_MODEL_KEY)
        end = data.find(b'"', start)
        value = data[start:end]
        if b"\\" not in value:
            return data if value == public else data[:start] + public + data[end:]
    elif b'"model"' not in data:
        return data
    if obj is None:
        obj = _loads(data)
    if not isinstance(obj, dict) or "model" not in obj or obj["model"] == public.decode():
        return data
    obj["model"] = public.decode()
    return orjson.dumps(obj)


def _has_usage(data: bytes) -> bool:
    """Whether a chunk may carry a usage object (compact JSON or not): a "usage" key not followed by null.
    OpenAI puts "usage":null in every chunk once include_usage is on; those are not parsed."""
    i = data.find(b'"usage"')
    return i >= 0 and not data[i + 7:i + 24].lstrip(b" \t\r\n:").startswith(b"null")


def bad_event() -> GatewayError:
    return GatewayError(502, "The upstream sent an unreadable stream event. The call was not charged.",
                        type="upstream_error", code="upstream_bad_response")


def stream_error(err: object, channel: Channel | None) -> GatewayError:
    """An `error` object inside an OpenAI stream -> the error the client sees (502, message scrubbed)."""
    message = err.get("message") if isinstance(err, dict) else err
    if not isinstance(message, str) or not message:
        message = "The upstream failed mid-stream."
    return GatewayError(502, scrub(message, channel), type="upstream_error", code="upstream_stream_error")


class OpenAIStream(StreamConverter):
    def __init__(self, public_model: str, include_usage: bool, channel: Channel | None = None) -> None:
        self.public = public_model.encode()
        self.channel = channel
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.finished = False
        self._chunks: list[bytes] = []

    def feed(self, data: bytes) -> list[bytes]:
        if data == b"[DONE]":
            self.finished = True
            return []
        obj = None
        if b'"error"' in data or b'"choices"' not in data:
            # An error object, wherever the chunk starts ({"id": ..., "error": ...}, {"type": "error", ...}),
            # or not a chunk at all: parsed. Ordinary chunks (they all carry "choices") are not.
            obj = _loads(data)
            if not isinstance(obj, dict):
                raise bad_event()
            if obj.get("error") is not None or obj.get("type") == "error":
                raise stream_error(obj["error"] if obj.get("error") is not None else obj, self.channel)
            if not isinstance(obj.get("choices"), list):
                raise bad_event()
        self._chunks.append(data)
        if _has_usage(data):
            if obj is None:
                obj = _loads(data)
            if isinstance(obj, dict) and obj.get("usage") is not None:
                self.usage = openai_usage(obj["usage"])  # the last report wins; a malformed one counts as none
                if not obj.get("choices") and not self.include_usage:
                    return []  # the usage chunk we asked for on the client's behalf
                if self.usage is None:  # discarded: the client does not see the upstream's numbers either
                    obj["usage"] = None
                    obj["model"] = self.public.decode()
                    return [b"data: " + orjson.dumps(obj) + b"\n\n"]
        return [b"data: " + _set_model(data, self.public, obj) + b"\n\n"]

    def produced_text(self) -> str:
        parts: list[str] = []
        for raw in self._chunks:
            obj = _loads(raw)
            if not isinstance(obj, dict):
                continue
            choices = obj.get("choices")
            for choice in choices if isinstance(choices, list) else ():
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if not isinstance(delta, dict):
                    continue
                for k in ("content", "reasoning_content", "refusal"):
                    if isinstance(delta.get(k), str):
                        parts.append(delta[k])
                tool_calls = delta.get("tool_calls")
                for tc in tool_calls if isinstance(tool_calls, list) else ():
                    fn = tc.get("function") if isinstance(tc, dict) else None
                    if isinstance(fn, dict):
                        parts += [v for v in (fn.get("name"), fn.get("arguments")) if isinstance(v, str)]
        return "".join(parts)


def _loads(data: bytes):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


class OpenAIAdapter(Adapter):
    def build_request(self, channel: Channel, body: dict, upstream_model: str, *, stream: bool,
                      max_tokens: int | None) -> UpstreamRequest:
        out = dict(body)
        out.pop("group", None)
        out["model"] = upstream_model
        if stream:
            opts = dict(out.get("stream_options") or {})
            opts["include_usage"] = True
            out["stream_options"] = opts
        if max_tokens is not None:
            # Keep the field the client used; newer models accept only max_completion_tokens.
            if out.get("max_tokens") is not None and out.get("max_completion_tokens") is None:
                out["max_tokens"] = max_tokens
                out.pop("max_completion_tokens", None)  # one cap upstream: the one the hold is computed on
            else:
                out["max_completion_tokens"] = max_tokens
                out.pop("max_tokens", None)
        return UpstreamRequest(
            url=channel.base_url + "/chat/completions",
            headers={"Authorization": "Bearer " + channel.api_key, "Content-Type": "application/json"},
            body=orjson.dumps(out))

    def parse_response(self, raw: bytes, public_model: str) -> tuple[bytes, Usage | None]:
        obj = orjson.loads(raw)
        if not isinstance(obj, dict) or not isinstance(obj.get("choices"), list):
            raise GatewayError(502, "The upstream returned a malformed completion.", type="upstream_error",
                               code="upstream_bad_response")
        usage = openai_usage(obj.get("usage"))
        dirty = obj.get("model") != public_model
        if usage is None and obj.get("usage") is not None:
            del obj["usage"]  # discarded: billed on our count, as if the upstream had reported none
            dirty = True
        if dirty:
            obj["model"] = public_model
            raw = orjson.dumps(obj)
        return raw, usage

    def stream_converter(self, public_model: str, upstream_model: str, include_usage: bool,
                         channel: Channel | None = None) -> OpenAIStream:
        return OpenAIStream(public_model, include_usage, channel)

    def map_error(self, status: int, raw: bytes, channel: Channel) -> GatewayError:
        return map_openai_error(status, raw, channel)


def redirect_error(status: int) -> GatewayError:
    """A 3xx from an upstream: never followed (the gateway's key would go with it), a bad response."""
    return GatewayError(502, f"The upstream provider answered with a redirect (HTTP {status}). "
                             "The call was not charged.", type="upstream_error", code="upstream_bad_response")


def map_openai_error(status: int, raw: bytes, channel: Channel) -> GatewayError:
    if 300 <= status < 400:
        return redirect_error(status)
    if status in (401, 403):
        # The upstream key is the operator's, not the client's: a gateway fault, not a client one.
        return GatewayError(502, "The upstream provider rejected the gateway's credentials.",
                            type="upstream_error", code="upstream_auth_failed")
    if status == 429:
        return GatewayError(429, "The upstream provider is rate limiting this model; retry shortly.",
                            type="upstream_error", code="upstream_rate_limited")
    if 400 <= status < 500:
        obj = _loads(raw)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, str):
            err = {"message": err}
        if not isinstance(err, dict):
            err = {}
        message = err.get("message")
        if not isinstance(message, str) or not message:
            message = f"The upstream rejected the request (HTTP {status})."
        # Every string relayed is scrubbed; type and code only if they are plain identifiers.
        return GatewayError(status, scrub(message, channel),
                            type=safe_code(err.get("type"), channel, "invalid_request_error"),
                            param=safe_param(err.get("param"), channel), code=safe_code(err.get("code"), channel))
    return GatewayError(502, f"The upstream provider failed (HTTP {status}). The call was not charged.",
                        type="upstream_error", code="upstream_error")


ADAPTER = OpenAIAdapter()
