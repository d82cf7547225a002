"""nginx configurations for the benchmark: the canned upstream and the proxy_pass floor (config B).

The upstream answers under four prefixes, so each variant is just another
channel base URL:
  /fast/v1/chat/completions    a ~1 KB completion with usage, at once
  /slow/v1/chat/completions    the same after 20 ms
  /stream/v1/chat/completions  64 SSE chunks 20 ms apart, then usage and [DONE]
  /paced/v1/chat/completions   the same stream at 250 ms a chunk (16 s long: thousands open at once)
and the same three for the Responses API (/fast/v1/responses, ...): a response object
with the same text and usage, and a stream of the real event sequence with 64
response.output_text.delta events 20 ms apart, ending with response.completed (no [DONE]).
"""
from __future__ import annotations

import json
from pathlib import Path

ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
STREAM_CHUNKS = 64
STREAM_INTERVAL_S = 0.02
PACED_INTERVAL_S = 0.25
PROMPT_TOKENS = 24
COMPLETION_TOKENS = 180


def completion() -> str:
    text = ("The quick brown fox jumps over the lazy dog. " * 18).strip()
    body = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 1764200000, "model": "bench-model",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                      "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}}
    return json.dumps(body, separators=(",", ":"))


def stream_events() -> list[str]:
    def chunk(delta: dict, finish: str | None = None, usage: dict | None = None, choices: bool = True) -> str:
        c = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1764200000, "model": "bench-model",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
        if usage is not None:
            c["usage"] = usage
        return "data: " + json.dumps(c, separators=(",", ":"))

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": f"tok{i} "}) for i in range(STREAM_CHUNKS)]
    events.append(chunk({}, finish="stop"))
    events.append(chunk({}, choices=False, usage={"prompt_tokens": PROMPT_TOKENS, "completion_tokens": STREAM_CHUNKS,
                                                  "total_tokens": PROMPT_TOKENS + STREAM_CHUNKS}))
    events.append("data: [DONE]")
    return events


def response_object(text: str, output_tokens: int, status: str = "completed", usage: bool = True) -> dict:
    return {"id": "resp_bench", "object": "response", "created_at": 1764200000, "status": status,
            "model": "bench-model", "error": None, "incomplete_details": None, "instructions": None,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "temperature": 1.0, "top_p": 1.0,
            "output": [{"id": "msg_bench", "type": "message", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "annotations": [], "text": text}]}] if text else [],
            "usage": {"input_tokens": PROMPT_TOKENS, "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                      "total_tokens": PROMPT_TOKENS + output_tokens} if usage else None}


def response() -> str:
    text = ("The quick brown fox jumps over the lazy dog. " * 18).strip()
    return json.dumps(response_object(text, COMPLETION_TOKENS), separators=(",", ":"))


def response_events() -> list[tuple[str, str]]:
    """The Responses stream: (event line, data line) per event, sequence numbers in order."""
    seq = iter(range(10_000))

    def ev(kind: str, **fields) -> tuple[str, str]:
        return f"event: {kind}", "data: " + json.dumps({"type": kind, **fields, "sequence_number": next(seq)},
                                                       separators=(",", ":"))

    start = response_object("", 0, "in_progress", usage=False)
    item = {"id": "msg_bench", "type": "message", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "annotations": [], "text": ""}
    events = [ev("response.created", response=start), ev("response.in_progress", response=start),
              ev("response.output_item.added", output_index=0, item=item),
              ev("response.content_part.added", item_id="msg_bench", output_index=0, content_index=0, part=part)]
    events += [ev("response.output_text.delta", item_id="msg_bench", output_index=0, content_index=0,
                  delta=f"tok{i} ", logprobs=[]) for i in range(STREAM_CHUNKS)]
    text = "".join(f"tok{i} " for i in range(STREAM_CHUNKS))
    done_part = {**part, "text": text}
    events += [ev("response.output_text.done", item_id="msg_bench", output_index=0, content_index=0, text=text,
                  logprobs=[]),
               ev("response.content_part.done", item_id="msg_bench", output_index=0, content_index=0, part=done_part),
               ev("response.output_item.done", output_index=0,
                  item={**item, "status": "completed", "content": [done_part]}),
               ev("response.completed", response=response_object(text, STREAM_CHUNKS))]
    return events


RESPONSES_HEAD = 4  # events before the first delta


def _quote(s: str) -> str:
    assert "'" not in s and "$" not in s and "\\" not in s  # nginx would interpolate or unescape these
    return "'" + s + "'"


def _common(workdir: Path) -> str:
    return f"""
load_module {ECHO_MODULE};
daemon off;
worker_processes 1;
pid {workdir}/PIDNAME.pid;
error_log {workdir}/PIDNAME.error.log warn;
events {{ worker_connections 8192; multi_accept on; }}
"""


def upstream_conf(workdir: Path, port: int) -> str:
    body = _quote(completion())
    lines = []
    events = stream_events()
    lines.append(f"echo {_quote(events[0])}; echo; echo_flush;")
    for ev in events[1:STREAM_CHUNKS + 1]:
        lines.append(f"echo_sleep {STREAM_INTERVAL_S}; echo {_quote(ev)}; echo; echo_flush;")
    for ev in events[STREAM_CHUNKS + 1:]:
        lines.append(f"echo {_quote(ev)}; echo;")
    stream = "\n            ".join(lines)
    paced = stream.replace(f"echo_sleep {STREAM_INTERVAL_S};", f"echo_sleep {PACED_INTERVAL_S};")
    rbody = _quote(response())
    rlines = []
    revents = response_events()
    for name, data in revents[:RESPONSES_HEAD]:
        rlines.append(f"echo {_quote(name)}; echo {_quote(data)}; echo; echo_flush;")
    for name, data in revents[RESPONSES_HEAD:RESPONSES_HEAD + STREAM_CHUNKS]:
        rlines.append(f"echo_sleep 0.02; echo {_quote(name)}; echo {_quote(data)}; echo; echo_flush;")
    for name, data in revents[RESPONSES_HEAD + STREAM_CHUNKS:]:
        rlines.append(f"echo {_quote(name)}; echo {_quote(data)}; echo;")
    rstream = "\n            ".join(rlines)
    return _common(workdir).replace("PIDNAME", "upstream") + f"""
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
    client_max_body_size 64m;  # bench/huge.py's ~4 MB prompts
    server {{
        listen 127.0.0.1:{port} backlog=4096 reuseport;
        location = /fast/v1/chat/completions {{
            default_type application/json;
            echo_read_request_body;
            echo -n {body};
        }}
        location = /slow/v1/chat/completions {{
            default_type application/json;
            echo_read_request_body;
            echo_sleep 0.02;
            echo -n {body};
        }}
        location = /stream/v1/chat/completions {{
            default_type text/event-stream;
            echo_read_request_body;
            {stream}
        }}
        location = /paced/v1/chat/completions {{
            default_type text/event-stream;
            echo_read_request_body;
            {paced}
        }}
        location = /fast/v1/responses {{
            default_type application/json;
            echo_read_request_body;
            echo -n {rbody};
        }}
        location = /slow/v1/responses {{
            default_type application/json;
            echo_read_request_body;
            echo_sleep 0.02;
            echo -n {rbody};
        }}
        location = /stream/v1/responses {{
            default_type text/event-stream;
            echo_read_request_body;
            {rstream}
        }}
    }}
}}
"""


def proxy_conf(workdir: Path, port: int, upstream_port: int) -> str:
    return _common(workdir).replace("PIDNAME", "proxy") + f"""
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 1024; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        client_max_body_size 32m;
        location / {{
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"""
