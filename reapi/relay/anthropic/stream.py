"""Anthropic Messages SSE events -> OpenAI chat.completion.chunk events (a StreamConverter)."""
from __future__ import annotations

import time
import uuid
from typing import Any

import orjson

from reapi.catalog import Channel
from reapi.relay.anthropic.errors import load_event, stream_error
from reapi.relay.anthropic.usage import finish_reason, openai_usage
from reapi.relay.base import StreamConverter, Usage
from reapi.relay.usage import anthropic_stream_usage, anthropic_usage


class AnthropicStreamConverter(StreamConverter):
    """Anthropic Messages SSE events -> OpenAI chat.completion.chunk events."""

    def __init__(self, public_model: str, upstream_model: str, include_usage: bool,
                 channel: Channel | None = None) -> None:
        self.public_model = public_model
        self.channel = channel  # whose secrets to scrub from `error` events
        self.upstream_model = upstream_model
        self.include_usage = include_usage
        self.usage: Usage | None = None
        self.finished = False
        self._id = "chatcmpl-" + uuid.uuid4().hex
        self._created = int(time.time())
        self._input: dict = {}
        self._blocks: dict[int, tuple[str, int]] = {}  # content block index -> (kind, tool call index)
        self._tool_args: dict[int, bool] = {}  # tool call index -> any arguments streamed yet
        self._tools = 0
        self._text: list[str] = []

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        obj: dict = {
            "id": self._id, "object": "chat.completion.chunk", "created": self._created, "model": self.public_model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            obj["usage"] = None
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    def _tool_delta(self, k: int, function: dict, **extra: Any) -> bytes:
        return self._chunk({"tool_calls": [{"index": k, **extra, "function": function}]})

    def feed(self, data: bytes) -> list[bytes]:
        ev = load_event(data)
        kind = ev.get("type")

        if kind == "message_start":
            msg = ev.get("message")
            msg = msg if isinstance(msg, dict) else {}
            if isinstance(msg.get("id"), str) and msg["id"]:
                self._id = "chatcmpl-" + msg["id"]
            usage = msg.get("usage")
            self._input = dict(usage) if isinstance(usage, dict) else {}
            return [self._chunk({"role": "assistant", "content": ""})]

        if kind == "content_block_start":
            index, block = ev.get("index"), ev.get("content_block") or {}
            btype = block.get("type")
            if btype == "tool_use":
                k = self._tools
                self._tools += 1
                self._blocks[index] = ("tool_use", k)
                self._tool_args[k] = False
                return [self._tool_delta(k, {"name": block.get("name"), "arguments": ""},
                                         id=block.get("id"), type="function")]
            self._blocks[index] = (btype, -1)
            if btype == "text" and block.get("text"):
                self._text.append(block["text"])
                return [self._chunk({"content": block["text"]})]
            if btype == "thinking" and block.get("thinking"):
                self._text.append(block["thinking"])
                return [self._chunk({"reasoning_content": block["thinking"]})]
            return []

        if kind == "content_block_delta":
            delta = ev.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text") or ""
                self._text.append(text)
                return [self._chunk({"content": text})] if text else []
            if dtype == "input_json_delta":
                part = delta.get("partial_json") or ""
                _, k = self._blocks.get(ev.get("index"), ("", -1))
                if not part or k < 0:
                    return []
                self._tool_args[k] = True
                self._text.append(part)
                return [self._tool_delta(k, {"arguments": part})]
            if dtype == "thinking_delta":
                text = delta.get("thinking") or ""
                self._text.append(text)
                return [self._chunk({"reasoning_content": text})] if text else []
            return []  # signature_delta, citations_delta

        if kind == "content_block_stop":
            btype, k = self._blocks.get(ev.get("index"), ("", -1))
            if btype == "tool_use" and not self._tool_args.get(k):
                # A tool without arguments streams no JSON at all; OpenAI clients expect a parseable object.
                self._tool_args[k] = True
                self._text.append("{}")
                return [self._tool_delta(k, {"arguments": "{}"})]
            return []

        if kind == "message_delta":
            self.usage = anthropic_stream_usage(self._input, ev.get("usage"))
            stop = (ev.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, finish_reason(stop))]

        if kind == "message_stop":
            self.finished = True
            if not self.include_usage:
                return []
            # Without a valid report the call is billed on our own count, which the client cannot see here.
            obj = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                   "model": self.public_model, "choices": [],
                   "usage": openai_usage(self.usage) if self.usage is not None else None}
            return [b"data: " + orjson.dumps(obj) + b"\n\n"]

        if kind == "error":
            raise stream_error(ev, self.channel)

        return []  # ping and future event types

    def produced_text(self) -> str:
        return "".join(self._text)

    def input_usage(self) -> Usage | None:
        """The prompt side of the usage as Anthropic counted it in message_start (input + cache read + cache
        creation), completion_tokens left 0; None before message_start or when it carried no usage.

        For a stream cut short before message_delta: the relay charges this prompt count rather than its own
        estimate, and counts the completion from produced_text()."""
        return anthropic_usage(self._input, prompt_only=True) if self._input else None
