"""OpenAI Responses wire format: request reading and response/stream building.

Non-stream: a ``response`` object (``object: "response"``) whose ``output`` holds an
optional ``reasoning`` item (when the request has ``reasoning`` with an effort other
than "none"; its ``encrypted_content`` is set when ``include`` has
``reasoning.encrypted_content``), then one ``message`` item (one ``output_text`` part)
or one ``function_call`` item (when ``tools`` has a function tool and the last input
item is a user message, as the chat mock does).

Stream (named SSE events, ``event: <type>`` then ``data: {...}`` carrying the same
``type`` and an increasing ``sequence_number`` from 0)::

    response.created, response.in_progress      the response, status in_progress, no output
    response.output_item.added/.done            the reasoning item (when asked for)
    response.output_item.added                  the message (or function_call) item
    response.content_part.added                 the output_text part (message only)
    response.output_text.delta*                 one per token | function_call_arguments.delta*
    response.output_text.done, content_part.done | function_call_arguments.done
    response.output_item.done
    response.completed | response.incomplete | response.failed   the whole response with usage

There is no ``data: [DONE]``.  The deltas are the stream's *content* units (what
``[mock drop_after=N]`` and ``[mock error_event_after=N]`` count); an in-stream error
is an ``error`` event (``{type, code, message, param, sequence_number}``).

Usage: ``input_tokens`` includes ``input_tokens_details.cached_tokens``
(``[mock cached_tokens=N]``, not added to input_tokens); ``output_tokens`` includes
``output_tokens_details.reasoning_tokens`` (the six reasoning tokens of the mock's
reasoning item).  Status: ``[mock finish=length]`` or a ``max_output_tokens`` cut gives
``incomplete`` (reason ``max_output_tokens``), ``content_filter``/``refusal`` gives
``incomplete`` (reason ``content_filter``), ``[mock finish=failed]`` gives ``failed``
with an ``error`` object, anything else ``completed``.
"""
from __future__ import annotations

import base64
import time
from typing import Any

import orjson

from .directives import (
    Plan,
    RequestInfo,
    StreamScript,
    count_pieces,
    new_id,
    split_arguments,
)
from .openai_format import content_text

dumps = orjson.dumps

ENCRYPTED_PREFIX = "gAAAAmock-"  # what the mock's encrypted reasoning content starts with


# --------------------------------------------------------------------------------------
# Request reading
# --------------------------------------------------------------------------------------


def input_items(body: dict[str, Any]) -> list[Any]:
    """The request's input as a list of items (a string is one user message)."""
    inp = body.get("input")
    if isinstance(inp, str):
        return [{"type": "message", "role": "user", "content": inp}]
    return inp if isinstance(inp, list) else []


def prompt_pieces(body: dict[str, Any]) -> list[str]:
    """Texts counted as input tokens: the instructions, every message's text, every function call's
    arguments and every function call output (string, or its text parts)."""
    out: list[str] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        out.append(instructions)
    for item in input_items(body):
        if not isinstance(item, dict):
            continue
        kind = item.get("type", "message")
        if kind == "message":
            content_text(item.get("content"), out)
        elif kind == "function_call" and isinstance(item.get("arguments"), str):
            out.append(item["arguments"])
        elif kind == "function_call_output":
            content_text(item.get("output"), out)
    return out


def count_prompt(body: dict[str, Any]) -> int:
    return count_pieces(prompt_pieces(body))


def last_user_text(items: list[Any]) -> str:
    for item in reversed(items):
        if isinstance(item, dict) and item.get("type", "message") == "message" and item.get("role") == "user":
            parts: list[str] = []
            content_text(item.get("content"), parts)
            return parts[0] if len(parts) == 1 else " ".join(parts)
    return ""


def pick_tool(body: dict[str, Any]) -> tuple[str, Any] | None:
    """The function tool to call, or None. Raises ValueError when tool_choice names an unknown tool."""
    tools = body.get("tools")
    if not tools or not isinstance(tools, list):
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    funcs = [t for t in tools if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)]
    if not funcs:
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        for f in funcs:
            if f.get("name") == name:
                return name, f.get("parameters")
        raise ValueError(f"tool_choice names an unknown tool {name!r}")
    first = funcs[0]
    return first["name"], first.get("parameters")


def wants_reasoning(body: dict[str, Any]) -> bool:
    r = body.get("reasoning")
    return isinstance(r, dict) and r.get("effort") not in (None, "none")


def read_request(body: dict[str, Any]) -> RequestInfo:
    """Validate the few fields the mock needs; raises ValueError (-> HTTP 400)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("you must provide a model parameter")
    inp = body.get("input")
    if not isinstance(inp, (str, list)) or (isinstance(inp, list) and not inp):
        raise ValueError("'input' must be a string or a non-empty array of items")
    cap = body.get("max_output_tokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 16):
        raise ValueError("max_output_tokens must be an integer >= 16")
    items = input_items(body)
    last = items[-1] if items else None
    kind = last.get("type", "message") if isinstance(last, dict) else None
    user_last = kind == "message" and last.get("role") == "user"
    return RequestInfo(
        model=model,
        stream=body.get("stream") is True,
        cap=cap,
        tool=pick_tool(body) if user_last else None,
        after_tool_result=kind == "function_call_output",
        thinking=wants_reasoning(body),
        directive_text=last_user_text(items),
    )


# --------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------


def status_of(plan: Plan) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """(status, incomplete_details, error) of the finished response."""
    f = plan.finish
    if f in ("length", "max_tokens", "max_output_tokens"):
        return "incomplete", {"reason": "max_output_tokens"}, None
    if f in ("content_filter", "refusal"):
        return "incomplete", {"reason": "content_filter"}, None
    if f == "failed":
        return "failed", None, {"code": "server_error", "message": "The model failed to finish (mock)."}
    return "completed", None, None


def usage(plan: Plan) -> dict[str, Any]:
    return {
        "input_tokens": plan.prompt_tokens,
        "input_tokens_details": {"cached_tokens": plan.cached_tokens},
        "output_tokens": plan.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": len(plan.thinking)},
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
    }


def _encrypted(reasoning_id: str) -> str:
    return ENCRYPTED_PREFIX + base64.b64encode(("mock-reasoning:" + reasoning_id).encode()).decode()


class _Items:
    """The output items of one answer, finished (for the response) and as they start (for the stream)."""

    def __init__(self, plan: Plan, body: dict[str, Any]) -> None:
        self.reasoning: dict[str, Any] | None = None
        if plan.thinking:
            rid = new_id("rs_")
            self.reasoning = {"id": rid, "type": "reasoning", "summary": []}
            include = body.get("include")
            if isinstance(include, list) and "reasoning.encrypted_content" in include:
                self.reasoning["encrypted_content"] = _encrypted(rid)
        status = "completed" if status_of(plan)[0] == "completed" else "incomplete"
        if plan.tool_call is not None:
            c = plan.tool_call
            self.main = {"id": new_id("fc_"), "type": "function_call", "status": "completed",
                         "arguments": c.arguments, "call_id": c.id, "name": c.name}
            self.main_started = {**self.main, "status": "in_progress", "arguments": ""}
        else:
            self.text = "".join(plan.tokens)
            self.part = {"type": "output_text", "annotations": [], "logprobs": [], "text": self.text}
            self.main = {"id": new_id("msg_"), "type": "message", "status": status, "role": "assistant",
                         "content": [self.part]}
            self.main_started = {**self.main, "status": "in_progress", "content": []}

    def output(self) -> list[dict[str, Any]]:
        return ([self.reasoning] if self.reasoning else []) + [self.main]


def response_object(plan: Plan, body: dict[str, Any], output: list[dict[str, Any]], *, status: str,
                    with_usage: bool, resp_id: str, created: int,
                    incomplete: dict[str, Any] | None = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    reasoning = body.get("reasoning") if isinstance(body.get("reasoning"), dict) else {}
    return {
        "id": resp_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": body.get("background") is True,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": plan.model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True) is not False,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_logprobs": body.get("top_logprobs", 0),
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": usage(plan) if with_usage and plan.usage else None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def finished_response(plan: Plan, body: dict[str, Any], items: _Items | None = None,
                      resp_id: str | None = None, created: int | None = None) -> dict[str, Any]:
    items = items or _Items(plan, body)
    status, incomplete, error = status_of(plan)
    return response_object(plan, body, items.output(), status=status, with_usage=True,
                           resp_id=resp_id or new_id("resp_"), created=created or int(time.time()),
                           incomplete=incomplete, error=error)


def build_response(plan: Plan, body: dict[str, Any]) -> bytes:
    return dumps(finished_response(plan, body))


def _event(kind: str, seq: int, fields: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + dumps({"type": kind, **fields, "sequence_number": seq}) + b"\n\n"


def error_event(error: dict[str, Any], seq: int) -> bytes:
    return _event("error", seq, {"code": error.get("code") or error.get("type"), "message": error.get("message"),
                                 "param": error.get("param")})


def build_stream(plan: Plan, body: dict[str, Any], error: dict[str, Any] | None) -> StreamScript:
    """The SSE stream as write units (see :class:`StreamScript`); ``final`` is the finished response."""
    items = _Items(plan, body)
    resp_id, created = new_id("resp_"), int(time.time())
    start = response_object(plan, body, [], status="in_progress", with_usage=False, resp_id=resp_id, created=created)
    seq = 0
    head: list[bytes] = []

    def ev(kind: str, **fields: Any) -> bytes:
        nonlocal seq
        out = _event(kind, seq, fields)
        seq += 1
        return out

    head.append(ev("response.created", response=start))
    head.append(ev("response.in_progress", response=start))
    index = 0
    if items.reasoning is not None:
        head.append(ev("response.output_item.added", output_index=0,
                       item={k: v for k, v in items.reasoning.items() if k != "encrypted_content"}))
        head.append(ev("response.output_item.done", output_index=0, item=items.reasoning))
        index = 1
    main = items.main
    head.append(ev("response.output_item.added", output_index=index, item=items.main_started))
    content: list[bytes] = []
    tail: list[bytes] = []
    if plan.tool_call is not None:
        for piece in split_arguments(main["arguments"]):
            content.append(ev("response.function_call_arguments.delta", item_id=main["id"], output_index=index,
                              delta=piece))
        tail.append(ev("response.function_call_arguments.done", item_id=main["id"], output_index=index,
                       arguments=main["arguments"]))
    else:
        empty = {**items.part, "text": ""}
        head.append(ev("response.content_part.added", item_id=main["id"], output_index=index, content_index=0,
                       part=empty))
        for t in plan.tokens:
            content.append(ev("response.output_text.delta", item_id=main["id"], output_index=index, content_index=0,
                              delta=t, logprobs=[]))
        tail.append(ev("response.output_text.done", item_id=main["id"], output_index=index, content_index=0,
                       text=items.text, logprobs=[]))
        tail.append(ev("response.content_part.done", item_id=main["id"], output_index=index, content_index=0,
                       part=items.part))
    tail.append(ev("response.output_item.done", output_index=index, item=main))
    final = finished_response(plan, body, items, resp_id, created)
    status = final["status"]
    tail.append(ev("response." + status, response=final))
    err = b""
    if error is not None:
        after = plan.directives.error_event_after or 0
        err = error_event(error, len(head) + min(after, len(content)))
    return StreamScript(head=b"".join(head), content=content, tail=b"".join(tail), error_event=err, final=final)
