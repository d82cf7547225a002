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
from reapi.relay.base import UpstreamRequest, Usage
from reapi.relay.scrub import scrub

_MODEL_KEY = b'"model":"'


def usage_from(d: dict | None) -> Usage | None:
    if not isinstance(d, dict):
        return None
    details = d.get("prompt_tokens_details") or {}
    return Usage(prompt_tokens=int(d.get("prompt_tokens") or 0),
                 completion_tokens=int(d.get("completion_tokens") or 0),
                 cached_tokens=int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0)


def _set_model(data: bytes, public: bytes) -> bytes:
    """Make the chunk's "model" the client's model name, by byte surgery when the JSON is compact."""
    i = data.find(_MODEL_KEY)
    if i < 0:
        return data
    start = i + len(_MODEL_KEY)
    end = data.find(b'"', start)
    if data[start:end] == public:
        return data
    return data[:start] + public + data[end:]


class OpenAIStream:
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
        if b'"error"' in data and not data.startswith(b'{"id"'):
            obj = _loads(data)
            if isinstance(obj, dict) and "error" in obj:
                err = obj["error"] if isinstance(obj["error"], dict) else {"message": str(obj["error"])}
                raise GatewayError(502, str(err.get("message") or "The upstream failed mid-stream."),
                                   type="upstream_error", code="upstream_stream_error")
        self._chunks.append(data)
        if b'"usage":{' in data:
            obj = _loads(data)
            if isinstance(obj, dict):
                self.usage = usage_from(obj.get("usage")) or self.usage
                if not obj.get("choices") and not self.include_usage:
                    return []  # the usage chunk we asked for on the client's behalf
        return [b"data: " + _set_model(data, self.public) + b"\n\n"]

    def produced_text(self) -> str:
        parts: list[str] = []
        for raw in self._chunks:
            obj = _loads(raw)
            if not isinstance(obj, dict):
                continue
            for choice in obj.get("choices") or ():
                delta = choice.get("delta") or {}
                for k in ("content", "reasoning_content", "refusal"):
                    if isinstance(delta.get(k), str):
                        parts.append(delta[k])
                for tc in delta.get("tool_calls") or ():
                    fn = tc.get("function") or {}
                    parts.append(fn.get("name") or "")
                    parts.append(fn.get("arguments") or "")
        return "".join(parts)


def _loads(data: bytes):
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return None


class OpenAIAdapter:
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
        usage = usage_from(obj.get("usage"))
        if obj.get("model") != public_model:
            obj["model"] = public_model
            raw = orjson.dumps(obj)
        return raw, usage

    def stream_converter(self, public_model: str, upstream_model: str, include_usage: bool,
                         channel: Channel | None = None) -> OpenAIStream:
        return OpenAIStream(public_model, include_usage, channel)

    def map_error(self, status: int, raw: bytes, channel: Channel) -> GatewayError:
        return map_openai_error(status, raw, channel)


def map_openai_error(status: int, raw: bytes, channel: Channel) -> GatewayError:
    err = _loads(raw)
    err = err.get("error") if isinstance(err, dict) else None
    if not isinstance(err, dict):
        err = {}
    if status in (401, 403):
        # The upstream key is the operator's, not the client's: a gateway fault, not a client one.
        return GatewayError(502, "The upstream provider rejected the gateway's credentials.",
                            type="upstream_error", code="upstream_auth_failed")
    if status == 429:
        return GatewayError(429, "The upstream provider is rate limiting this model; retry shortly.",
                            type="upstream_error", code="upstream_rate_limited")
    if 400 <= status < 500:
        message = scrub(str(err.get("message") or f"The upstream rejected the request (HTTP {status})."), channel)
        return GatewayError(status, message, type=str(err.get("type") or "invalid_request_error"),
                            param=err.get("param"), code=err.get("code"))
    return GatewayError(502, f"The upstream provider failed (HTTP {status}). The call was not charged.",
                        type="upstream_error", code="upstream_error")


ADAPTER = OpenAIAdapter()
