"""The `anthropic` channel type's Adapter: an OpenAI chat request to Anthropic's Messages API and back."""
from __future__ import annotations

import time
import uuid

import orjson

from reapi.catalog import Channel
from reapi.errors import GatewayError
from reapi.relay.anthropic.errors import _STATUS_ONLY, _STATUS_TYPES, error_from_anthropic, load_message
from reapi.relay.anthropic.request import ANTHROPIC_VERSION, build_payload, upstream_url
from reapi.relay.anthropic.stream import AnthropicStreamConverter
from reapi.relay.anthropic.usage import finish_reason, openai_usage, usage_from_anthropic
from reapi.relay.base import Adapter, UpstreamRequest, Usage
from reapi.relay.openai import redirect_error


class AnthropicAdapter(Adapter):
    requires_max_tokens = True  # Anthropic requires max_tokens: always send the cap billing decided
    tokenizer_family = "claude"  # o200k + a margin (reapi.billing.tokens)

    def build_request(
        self, channel: Channel, body: dict, upstream_model: str, *, stream: bool, max_tokens: int | None
    ) -> UpstreamRequest:
        payload = build_payload(body, upstream_model, stream=stream, max_tokens=max_tokens)
        headers = {
            "x-api-key": channel.api_key,
            "anthropic-version": ANTHROPIC_VERSION,
            "content-type": "application/json",
        }
        return UpstreamRequest(url=upstream_url(channel.base_url), headers=headers, body=orjson.dumps(payload))

    def parse_response(self, raw: bytes, public_model: str) -> tuple[bytes, Usage | None]:
        msg = load_message(raw)
        content = msg["content"]

        texts: list[str] = []
        thinking: list[str] = []
        tool_calls: list[dict] = []
        for block in content:
            btype = block.get("type") if isinstance(block, dict) else None
            if btype == "text":
                texts.append(block.get("text") or "")
            elif btype == "thinking":
                thinking.append(block.get("thinking") or "")
            elif btype == "tool_use":
                tool_calls.append({
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"),
                                 "arguments": orjson.dumps(block.get("input") or {}).decode()},
                })
        message: dict = {
            "role": "assistant",
            "content": None if (not texts and tool_calls) else "".join(texts),
            "refusal": None,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        if thinking:
            message["reasoning_content"] = "".join(thinking)

        usage = usage_from_anthropic(msg.get("usage"))  # None: billed on our count, no usage in the answer
        out = {
            "id": "chatcmpl-" + str(msg.get("id") or uuid.uuid4().hex),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": public_model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": finish_reason(msg.get("stop_reason"))}],
        }
        if usage is not None:
            out["usage"] = openai_usage(usage)
        return orjson.dumps(out), usage

    def stream_converter(self, public_model: str, upstream_model: str, include_usage: bool,
                         channel: Channel | None = None) -> AnthropicStreamConverter:
        return AnthropicStreamConverter(public_model, upstream_model, include_usage, channel)

    def map_error(self, status: int, raw: bytes, channel: Channel) -> GatewayError:
        if 300 <= status < 400:
            return redirect_error(status)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        err = obj.get("error") if isinstance(obj, dict) else None
        if not isinstance(err, dict):
            if status in _STATUS_ONLY:
                return error_from_anthropic(status, _STATUS_TYPES[status], None, channel)
            return GatewayError(502, f"The upstream provider returned an unreadable error (HTTP {status}).",
                                type="upstream_error", code="upstream_error")
        return error_from_anthropic(status, err.get("type"), err.get("message"), channel)


ADAPTER = AnthropicAdapter()
