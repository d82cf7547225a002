"""OpenAI Chat Completions wire format: request reading and response/stream building.

Non-stream: a ``chat.completion`` object.  Stream: ``chat.completion.chunk`` SSE
``data:`` lines -- a first chunk whose delta carries ``role`` (and ``content: ""``
or the first tool-call delta), one chunk per token, a final chunk with an empty
delta and ``finish_reason``, then (when ``stream_options.include_usage``) a chunk
with ``choices: []`` and ``usage`` -- every earlier chunk then has ``"usage": null``
-- and finally ``data: [DONE]``.  Only ``n=1`` is produced.

Usage: ``prompt_tokens`` includes ``prompt_tokens_details.cached_tokens`` as in the
real API; with ``[mock cached_tokens=N]`` the mock reports N there and does not
change ``prompt_tokens``.
"""
from __future__ import annotations

import time
from typing import Any

import orjson

from .directives import (
    VOCAB,
    Plan,
    RequestInfo,
    StreamScript,
    count_pieces,
    new_id,
    split_arguments,
)

dumps = orjson.dumps

# Default error ``type`` (and ``code``) by HTTP status.
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
ERROR_CODES: dict[int, str] = {
    401: "invalid_api_key",
    404: "model_not_found",
    429: "rate_limit_exceeded",
}
ERROR_MESSAGES: dict[int, str] = {
    400: "Invalid request (mock).",
    401: "Incorrect API key provided (mock).",
    403: "You are not allowed to access this resource (mock).",
    404: "The model does not exist or you do not have access to it (mock).",
    429: "Rate limit reached (mock).",
    500: "The server had an error while processing your request (mock).",
    503: "The server is overloaded or not ready yet (mock).",
}

FINISH = {"stop": "stop", "length": "length", "tool": "tool_calls", "content_filter": "content_filter",
          "refusal": "content_filter", "max_tokens": "length", "end_turn": "stop", "tool_use": "tool_calls"}


def default_error_type(status: int) -> str:
    if status in ERROR_TYPES:
        return ERROR_TYPES[status]
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(
    status: int,
    message: str | None = None,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
) -> bytes:
    return dumps(
        {
            "error": {
                "message": message or ERROR_MESSAGES.get(status, f"Mock error (HTTP {status})."),
                "type": type or default_error_type(status),
                "param": param,
                "code": code if code is not None else ERROR_CODES.get(status),
            }
        }
    )


# --------------------------------------------------------------------------------------
# Request reading
# --------------------------------------------------------------------------------------


def content_text(content: Any, out: list[str]) -> None:
    """Append the text (or refusal) of a message content, a string or a list of parts, to `out`."""
    if isinstance(content, str):
        out.append(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict):
                t = part.get("text")
                if isinstance(t, str):
                    out.append(t)
                else:
                    r = part.get("refusal")
                    if isinstance(r, str):
                        out.append(r)


def prompt_pieces(body: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for msg in body.get("messages") or ():
        if not isinstance(msg, dict):
            continue
        content_text(msg.get("content"), out)
        calls = msg.get("tool_calls")
        if isinstance(calls, list):
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    out.append(fn["arguments"])
        fc = msg.get("function_call")
        if isinstance(fc, dict) and isinstance(fc.get("arguments"), str):
            out.append(fc["arguments"])
    return out


def count_prompt(body: dict[str, Any]) -> int:
    return count_pieces(prompt_pieces(body))


def last_user_text(messages: list[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            parts: list[str] = []
            content_text(msg.get("content"), parts)
            return parts[0] if len(parts) == 1 else " ".join(parts)
    return ""


def pick_tool(body: dict[str, Any]) -> tuple[str, Any] | None:
    """The tool to call, or None. Raises ValueError when tool_choice names an unknown tool."""
    tools = body.get("tools")
    if not tools or not isinstance(tools, list):
        return None
    choice = body.get("tool_choice")
    if choice == "none":
        return None
    funcs = [
        t["function"]
        for t in tools
        if isinstance(t, dict) and t.get("type", "function") == "function" and isinstance(t.get("function"), dict)
    ]
    if not funcs:
        return None
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else choice.get("name")
        if isinstance(name, str):
            for f in funcs:
                if f.get("name") == name:
                    return name, f.get("parameters")
            raise ValueError(f"tool_choice names an unknown tool {name!r}")
    first = funcs[0]
    return str(first.get("name", "")), first.get("parameters")


def read_request(body: dict[str, Any]) -> RequestInfo:
    """Validate the few fields the mock needs; raises ValueError (-> HTTP 400)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("you must provide a model parameter")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty array")
    cap = body.get("max_completion_tokens")
    if cap is None:
        cap = body.get("max_tokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise ValueError("max_tokens / max_completion_tokens must be a positive integer")
    last = messages[-1]
    role = last.get("role") if isinstance(last, dict) else None
    tool = pick_tool(body) if role == "user" else None
    return RequestInfo(
        model=model,
        stream=body.get("stream") is True,
        cap=cap,
        tool=tool,
        after_tool_result=role in ("tool", "function"),
        thinking=False,
        directive_text=last_user_text(messages),
    )


# --------------------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------------------

_LP_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}
_VOCAB_INDEX = {w: i for i, w in enumerate(VOCAB)}


def _logprob_entry(token: str, pos: int, top: int) -> dict[str, Any]:
    """Deterministic logprob entry; top_logprobs[0] is the sampled token itself."""
    key = (token, pos % 10, top)
    e = _LP_CACHE.get(key)
    if e is None:
        lp = -round(0.01 + 0.02 * (pos % 10), 4)
        alts: list[dict[str, Any]] = []
        if top > 0:
            alts.append({"token": token, "logprob": lp, "bytes": list(token.encode())})
            start = _VOCAB_INDEX.get(token, sum(token.encode())) + 1
            j = 0
            while len(alts) < top:
                alt = VOCAB[(start + j) % len(VOCAB)]
                j += 1
                if alt == token:
                    continue
                alts.append({"token": alt, "logprob": -round(1.5 + 0.75 * len(alts), 4), "bytes": list(alt.encode())})
        e = {"token": token, "logprob": lp, "bytes": list(token.encode()), "top_logprobs": alts}
        if len(_LP_CACHE) < 100_000:
            _LP_CACHE[key] = e
    return e


def _usage(plan: Plan) -> dict[str, Any]:
    return {
        "prompt_tokens": plan.prompt_tokens,
        "completion_tokens": plan.completion_tokens,
        "total_tokens": plan.prompt_tokens + plan.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _finish(plan: Plan) -> str:
    return FINISH.get(plan.finish, plan.finish)


def build_response(plan: Plan, body: dict[str, Any]) -> bytes:
    message: dict[str, Any]
    logprobs: Any = None
    if plan.tool_call is not None:
        c = plan.tool_call
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}],
            "refusal": None,
            "annotations": [],
        }
    else:
        message = {"role": "assistant", "content": "".join(plan.tokens), "refusal": None, "annotations": []}
        if body.get("logprobs") is True:
            top = _top(body)
            logprobs = {
                "content": [_logprob_entry(t, i, top) for i, t in enumerate(plan.tokens)],
                "refusal": None,
            }
    out: dict[str, Any] = {
        "id": new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": plan.model,
        "choices": [{"index": 0, "message": message, "logprobs": logprobs, "finish_reason": _finish(plan)}],
        "service_tier": "default",
        "system_fingerprint": "fp_mock",
    }
    if plan.usage:
        out["usage"] = _usage(plan)
    return dumps(out)


def _top(body: dict[str, Any]) -> int:
    top = body.get("top_logprobs")
    return top if isinstance(top, int) and 0 < top <= 20 else 0


def build_stream(plan: Plan, body: dict[str, Any], error: dict[str, Any] | None) -> StreamScript:
    """The SSE stream as write units (see :class:`StreamScript`)."""
    so = body.get("stream_options")
    include_usage = isinstance(so, dict) and so.get("include_usage") is True and plan.usage
    usage_null = b',"usage":null}\n\n' if include_usage else b"}\n\n"
    pre = b"".join(
        (
            b'data: {"id":"', new_id("chatcmpl-").encode(),
            b'","object":"chat.completion.chunk","created":', str(int(time.time())).encode(),
            b',"model":', dumps(plan.model),
            b',"service_tier":"default","system_fingerprint":"fp_mock","choices":[{"index":0,"delta":',
        )
    )
    no_lp = b',"logprobs":null,"finish_reason":null}]' + usage_null
    content: list[bytes] = []
    if plan.tool_call is not None:
        c = plan.tool_call
        first = {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"index": 0, "id": c.id, "type": "function", "function": {"name": c.name, "arguments": ""}}],
            "refusal": None,
        }
        head = pre + dumps(first) + no_lp
        for piece in split_arguments(c.arguments):
            content.append(pre + b'{"tool_calls":[{"index":0,"function":{"arguments":' + dumps(piece) + b"}}]}" + no_lp)
    else:
        head = pre + b'{"role":"assistant","content":"","refusal":null}' + no_lp
        if body.get("logprobs") is True:
            top = _top(body)
            for i, t in enumerate(plan.tokens):
                lp = dumps({"content": [_logprob_entry(t, i, top)], "refusal": None})
                content.append(
                    pre + b'{"content":' + dumps(t) + b'},"logprobs":' + lp + b',"finish_reason":null}]' + usage_null
                )
        else:
            for t in plan.tokens:
                content.append(pre + b'{"content":' + dumps(t) + b"}" + no_lp)
    tail = pre + b'{},"logprobs":null,"finish_reason":' + dumps(_finish(plan)) + b"}]" + usage_null
    if include_usage:
        # Same prefix up to "choices":[ ... but with an empty choices list.
        upre = pre[: pre.index(b'"choices":[')]
        tail += upre + b'"choices":[],"usage":' + dumps(_usage(plan)) + b"}\n\n"
    tail += b"data: [DONE]\n\n"
    error_event = b"" if error is None else b"data: " + dumps({"error": error}) + b"\n\n"
    return StreamScript(head=head, content=content, tail=tail, error_event=error_event)
