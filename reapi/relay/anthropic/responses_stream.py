"""Claude's Messages SSE events -> the Responses API's event sequence (a StreamConverter fed `data:` payloads).

    message_start         -> response.created, response.in_progress
    content_block_start   -> response.output_item.added (+ content_part.added for text,
                             reasoning_summary_part.added for thinking)
    text_delta            -> response.output_text.delta
    thinking_delta        -> response.reasoning_summary_text.delta (signature_delta: kept for encrypted_content)
    input_json_delta      -> response.function_call_arguments.delta
    content_block_stop    -> output_text.done + content_part.done | reasoning_summary_text.done +
                             reasoning_summary_part.done | function_call_arguments.done; then output_item.done
    message_delta         -> (stop reason and usage kept)
    message_stop          -> response.completed or response.incomplete: held back, sent by end() once settled
    error                 -> raises (the relay sends our `error` event, numbered next)

Every event is `event: <type>` + `data: {..., "sequence_number": N}`, N from 0 and up by one; no [DONE].
"""
from __future__ import annotations

import time

import orjson

from reapi.catalog import Channel
from reapi.errors import GatewayError
from reapi.relay.anthropic.errors import _bad_upstream, load_event, stream_error
from reapi.relay.anthropic.responses import (CLAUDE_ID_PREFIX, call_item, namespaced, new_id, reasoning_item,
                                             response_shell, responses_usage, seal, status_of, wants_encrypted)
from reapi.relay.base import StreamConverter, Usage
from reapi.relay.openai_responses import error_event
from reapi.relay.usage import anthropic_stream_usage, anthropic_usage


class _Block:
    __slots__ = ("kind", "index", "item", "parts", "block")

    def __init__(self, kind: str, index: int, item: dict, block: dict) -> None:
        self.kind, self.index, self.item, self.block = kind, index, item, block
        self.parts: list[str] = []


class ClaudeResponsesStream(StreamConverter):
    __slots__ = ("model", "channel", "body", "usage", "finished", "seq", "shell", "blocks", "output", "stop",
                 "last", "_input", "_text", "include", "names")

    def __init__(self, public_model: str, channel: Channel | None, body: dict) -> None:
        self.model = public_model
        self.channel = channel
        self.body = body
        self.include = wants_encrypted(body)
        self.names = namespaced(body)
        self.usage: Usage | None = None
        self.finished = False
        self.seq = 0  # the next sequence_number
        self.shell: dict | None = None
        self.blocks: dict[int, _Block] = {}
        self.output: list[dict] = []  # every output item, in output_index order
        self.stop: object = None
        self.last = b""
        self._input: dict = {}
        self._text: list[str] = []

    def _event(self, kind: str, **fields) -> bytes:
        data = {"type": kind, **fields, "sequence_number": self.seq}
        self.seq += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    def _response(self, status: str) -> dict:
        if self.shell is None:
            self.shell = response_shell(new_id(CLAUDE_ID_PREFIX), int(time.time()), self.model, self.body, status)
        return {**self.shell, "status": status}

    def feed(self, data: bytes) -> list[bytes]:
        ev = load_event(data)
        kind = ev.get("type")
        if kind == "message_start":
            if self.shell is not None:
                raise _bad_upstream("a second message_start")
            msg = ev.get("message") if isinstance(ev.get("message"), dict) else {}
            usage = msg.get("usage")
            self._input = dict(usage) if isinstance(usage, dict) else {}
            return [self._event("response.created", response=self._response("in_progress")),
                    self._event("response.in_progress", response=self._response("in_progress"))]
        if self.shell is None and kind != "ping" and kind != "error":
            raise _bad_upstream("a stream event before message_start")
        if kind == "content_block_start":
            return self._start(ev)
        if kind == "content_block_delta":
            return self._delta(ev)
        if kind == "content_block_stop":
            return self._stop(ev)
        if kind == "message_delta":
            self.usage = anthropic_stream_usage(self._input, ev.get("usage"))
            delta = ev.get("delta") if isinstance(ev.get("delta"), dict) else {}
            self.stop = delta.get("stop_reason")
            return []
        if kind == "message_stop":
            self.finished = True
            self.last = self._terminal()
            return []
        if kind == "error":
            raise stream_error(ev, self.channel)
        return []  # ping and future event types

    def _start(self, ev: dict) -> list[bytes]:
        index, block = ev.get("index"), ev.get("content_block")
        if type(index) is not int or index in self.blocks or not isinstance(block, dict):
            raise _bad_upstream("a malformed content_block_start")
        btype = block.get("type")
        n = len(self.output)
        if btype == "text":
            item = {"id": new_id("msg_"), "type": "message", "status": "in_progress", "role": "assistant",
                    "content": []}
        elif btype in ("thinking", "redacted_thinking"):
            item = {"id": new_id("rs_"), "type": "reasoning", "summary": []}
        elif btype == "tool_use":
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _bad_upstream("a malformed tool_use block")
            item = {**call_item(block, "", self.names), "status": "in_progress"}
        else:
            self.blocks[index] = _Block("skip", -1, {}, block)  # a server tool's block: not ours to show
            return []
        self.blocks[index] = b = _Block(btype, n, item, dict(block))
        self.output.append(item)
        out = [self._event("response.output_item.added", output_index=n, item=item)]
        if btype == "text":
            out.append(self._event("response.content_part.added", item_id=item["id"], output_index=n,
                                   content_index=0, part=_text_part("")))
            if isinstance(block.get("text"), str) and block["text"]:
                out.append(self._text_delta(b, block["text"]))
        elif btype == "thinking":
            out.append(self._event("response.reasoning_summary_part.added", item_id=item["id"], output_index=n,
                                   summary_index=0, part={"type": "summary_text", "text": ""}))
        return out

    def _text_delta(self, b: _Block, text: str) -> bytes:
        b.parts.append(text)
        self._text.append(text)
        return self._event("response.output_text.delta", item_id=b.item["id"], output_index=b.index,
                           content_index=0, delta=text, logprobs=[])

    def _delta(self, ev: dict) -> list[bytes]:
        b = self.blocks.get(ev.get("index"))
        delta = ev.get("delta")
        if b is None or not isinstance(delta, dict):
            raise _bad_upstream("a content_block_delta for no open block")
        dtype = delta.get("type")
        if b.kind == "skip":
            return []
        if dtype == "text_delta" and b.kind == "text":
            text = delta.get("text")
            if not isinstance(text, str):
                raise _bad_upstream("a malformed text_delta")
            return [self._text_delta(b, text)] if text else []
        if dtype == "thinking_delta" and b.kind == "thinking":
            text = delta.get("thinking")
            if not isinstance(text, str):
                raise _bad_upstream("a malformed thinking_delta")
            b.parts.append(text)
            self._text.append(text)
            return [self._event("response.reasoning_summary_text.delta", item_id=b.item["id"],
                                output_index=b.index, summary_index=0, delta=text)] if text else []
        if dtype == "signature_delta" and b.kind == "thinking":
            if isinstance(delta.get("signature"), str):
                b.block["signature"] = (b.block.get("signature") or "") + delta["signature"]
            return []
        if dtype == "input_json_delta" and b.kind == "tool_use":
            part = delta.get("partial_json")
            if not isinstance(part, str):
                raise _bad_upstream("a malformed input_json_delta")
            if not part:
                return []
            b.parts.append(part)
            self._text.append(part)
            return [self._event("response.function_call_arguments.delta", item_id=b.item["id"],
                                output_index=b.index, delta=part)]
        return []  # citations_delta and future delta types

    def _stop(self, ev: dict) -> list[bytes]:
        b = self.blocks.pop(ev.get("index"), None) if type(ev.get("index")) is int else None  # closed once
        if b is None:
            raise _bad_upstream("a content_block_stop for no open block")
        item, n, out = b.item, b.index, []
        if b.kind == "text":
            text = "".join(b.parts)
            part = _text_part(text)
            out.append(self._event("response.output_text.done", item_id=item["id"], output_index=n,
                                   content_index=0, text=text, logprobs=[]))
            out.append(self._event("response.content_part.done", item_id=item["id"], output_index=n,
                                   content_index=0, part=part))
            item.update(status="completed", content=[part])
        elif b.kind == "thinking":
            text = "".join(b.parts)
            b.block["thinking"] = text
            part = {"type": "summary_text", "text": text}
            out.append(self._event("response.reasoning_summary_text.done", item_id=item["id"], output_index=n,
                                   summary_index=0, text=text))
            out.append(self._event("response.reasoning_summary_part.done", item_id=item["id"], output_index=n,
                                   summary_index=0, part=part))
            item.update(reasoning_item(b.block, self.include), id=item["id"])
        elif b.kind == "redacted_thinking":
            if self.include:
                item["encrypted_content"] = seal(b.block)
        elif b.kind == "tool_use":
            arguments = "".join(b.parts) or "{}"
            try:
                parsed = orjson.loads(arguments)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict):
                raise _bad_upstream("tool call arguments that are not a JSON object")
            if not b.parts:
                self._text.append(arguments)
            self._text.append(b.block["name"])
            out.append(self._event("response.function_call_arguments.done", item_id=item["id"], output_index=n,
                                   name=item["name"], arguments=arguments))
            item.update(status="completed", arguments=arguments)
        else:
            return []
        out.append(self._event("response.output_item.done", output_index=n, item=item))
        return out

    def _terminal(self) -> bytes:
        status, incomplete = status_of(self.stop)
        response = self._response(status)
        response["incomplete_details"] = incomplete
        response["output"] = [{**i, "status": "incomplete"} if status == "incomplete" and i["type"] == "message"
                              else i for i in self.output]
        response["usage"] = responses_usage(self.usage)
        return self._event("response.incomplete" if status == "incomplete" else "response.completed",
                           response=response)

    def end(self) -> bytes:
        """The terminal event, sent once the call is settled (built now if the upstream skipped message_stop)."""
        if not self.last:
            self.last = self._terminal()
        return self.last

    def error_event(self, err: GatewayError, request_id: str) -> bytes:
        return error_event(err, self.seq)

    def produced_text(self) -> str:
        return "".join(self._text)

    def input_usage(self) -> Usage | None:
        return anthropic_usage(self._input, prompt_only=True) if self._input else None


def _text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
