"""Hypothesis strategies for hostile upstream answers (used by tests/test_fuzz_upstream.py).

An answer is a `Plan`: plain data (status, body bytes, how the body is cut into
writes, where the connection is dropped, ...), so hypothesis can shrink it and a
failing example prints readably. Secrets are written as markers and put in at
serve time (`Plan.handler`), because the hostile upstream's port, hence its URL,
is only known once it runs:

    @@S<i>@@   the i-th of Hostile.secret_forms() (key, URL, host, encoded and masked forms)
    @@KEY@@    the channel key (HOSTILE_KEY)
    @@URL@@    the channel's base URL
    @@SINK@@   the URL of a second server that records every hit (redirect target)

Every string field an answer can carry outside the model's own output (error
message/type/param/code, model, usage fields, non-JSON bodies, response headers)
is drawn from `leaky`, i.e. it may echo a secret. The model's output (content,
ids, fingerprints) echoes secrets only with `echo_payload=True`.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from aiohttp import web
from hypothesis import strategies as st

from tests.hostile import HOSTILE_KEY

N_FORMS = 12  # len(Hostile.secret_forms()) for a loopback URL; markers wrap modulo the real count
MISSING = "<missing>"  # a field left out of an object

TEMPLATES = [
    "@@S{i}@@",
    "Incorrect API key provided: @@S{i}@@. You can find your API key at https://platform.example/account.",
    "upstream POST @@URL@@/chat/completions failed for key @@KEY@@",
    "error at @@S{i}@@/chat/completions?api_key=@@KEY@@",
    "Bearer @@S{i}@@",
    "x-api-key: @@S{i}@@ rejected",
]

leaky = st.builds(lambda t, i: t.format(i=i), st.sampled_from(TEMPLATES), st.integers(0, N_FORMS - 1))

WEIRD_INTS = [-1, -7, -(2**31), 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64, 10**30, -(10**30)]
token = st.one_of(
    st.integers(0, 2_000),
    st.sampled_from(WEIRD_INTS),
    st.sampled_from([1.5, -0.5, 1e30, 0.0, 12.0]),
    st.sampled_from(["12", "", "abc", True, False, None, [], {}, [5]]),
    leaky,
)
code_like = st.one_of(
    leaky,
    st.sampled_from([400, 0, -1, 2**63, [1, 2], {"a": 1}, None, True, "x" * 300, "invalid_api_key",
                     "context_length_exceeded", "rate_limit_exceeded", "server_error"]),
)


def _compact(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not MISSING}


def optional(s: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.just(MISSING), s)


def dump(obj: object, spaced: bool) -> str:
    return json.dumps(obj, separators=(", ", ": ") if spaced else (",", ":"))


@dataclass(frozen=True)
class Plan:
    """One upstream answer: `body` written in pieces cut at `cuts` (permille of its length),
    `pause` seconds before each piece after the first, `stall` seconds once after the first
    piece; `drop_at` (permille) closes the connection after that much of the body instead of
    ending it; `redirect` adds Location: @@SINK@@/v1/... (a 3xx status)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    cuts: tuple[int, ...] = ()
    pause: float = 0.0
    stall: float = 0.0
    drop_at: int | None = None
    redirect: bool = False
    client_usage: bool = False  # the client asks for stream_options.include_usage
    label: str = ""

    def handler(self, forms: list[str], url: str, sink: str):
        """The aiohttp handler serving this plan with the markers replaced."""

        def fill(text: str) -> str:
            for i in range(N_FORMS):
                text = text.replace(f"@@S{i}@@", forms[i % len(forms)])
            return text.replace("@@KEY@@", HOSTILE_KEY).replace("@@URL@@", url).replace("@@SINK@@", sink)

        body = fill(self.body.decode()).encode()
        headers = {"x-upstream-echo": fill("@@KEY@@ @@URL@@"), "x-request-id": fill("req-@@S0@@")}
        if self.redirect:
            headers["Location"] = fill("@@SINK@@/v1/chat/completions?key=@@KEY@@")
        cuts = sorted({len(body) * c // 1000 for c in self.cuts} | {0, len(body)})
        pieces = [body[a:b] for a, b in zip(cuts, cuts[1:])]
        drop = None if self.drop_at is None else len(body) * self.drop_at // 1000
        streamed = self.content_type.startswith("text/event-stream")

        async def handle(request: web.Request) -> web.StreamResponse:
            resp = web.StreamResponse(status=self.status, headers=headers)
            resp.content_type = self.content_type
            if not streamed:
                resp.content_length = len(body)
            await resp.prepare(request)
            sent = 0
            for n, piece in enumerate(pieces):
                if n and self.pause:
                    await asyncio.sleep(self.pause)
                if n == 1 and self.stall:
                    await asyncio.sleep(self.stall)
                if drop is not None and sent + len(piece) >= drop:
                    await resp.write(piece[:drop - sent])
                    request.transport.close()
                    return resp
                await resp.write(piece)
                sent += len(piece)
            if drop is not None:
                request.transport.close()
                return resp
            await resp.write_eof()
            return resp

        return handle


# ---------------------------------------------------------------- shared pieces

cuts_st = st.lists(st.integers(1, 999), max_size=6).map(lambda xs: tuple(sorted(xs)))
pause_st = st.sampled_from([0.0, 0.0, 0.0, 0.005, 0.03])
ok_status = st.sampled_from([200, 200, 200, 200, 201, 203])
error_status = st.sampled_from([400, 401, 402, 403, 404, 408, 409, 413, 418, 422, 429, 451,
                                500, 502, 503, 504, 529, 599])
model_st = st.one_of(st.just("upstream-model-v9"), leaky)


def non_json(message: str, kind: int) -> str:
    return [f"<html><body><h1>502 Bad Gateway</h1>{message}</body></html>", message, "",
            "{\"error\": {\"message\": \"" + message, "null", "[]", "\"" + message + "\""][kind]


non_json_st = st.builds(non_json, leaky, st.integers(0, 6))


def text_st(echo: bool) -> st.SearchStrategy[str]:
    return leaky if echo else st.sampled_from(["hi", "Hello there", ""])


# ---------------------------------------------------------------- OpenAI format

OA_SANE = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7, "prompt_tokens_details": {"cached_tokens": 0}}
AN_SANE = {"input_tokens": 5, "output_tokens": 2, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}


def one_bad(sane: dict, fields: list[str]) -> st.SearchStrategy[dict]:
    """A plausible usage object with one count replaced by a hostile value (the likeliest real-world bug)."""
    def put(name: str, value: object) -> dict:
        out = json.loads(json.dumps(sane))
        if name == "cached_tokens":
            out["prompt_tokens_details"]["cached_tokens"] = value
        else:
            out[name] = value
        return out
    return st.builds(put, st.sampled_from(fields), token)


oa_one_bad = one_bad(OA_SANE, ["prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"])
oa_usage = st.one_of(
    oa_one_bad, oa_one_bad, oa_one_bad,
    st.just(MISSING), st.just(None), st.just({}),
    st.builds(lambda t: {"total_tokens": t}, token),
    st.builds(lambda p, c, t, d: _compact({"prompt_tokens": p, "completion_tokens": c, "total_tokens": t,
                                           "prompt_tokens_details": d}),
              optional(token), optional(token), optional(token),
              optional(st.one_of(token, st.builds(lambda c: {"cached_tokens": c}, token)))),
    st.builds(lambda p: {"prompt_tokens": p, "completion_tokens": 5, "total_tokens": p + 5,
                         "prompt_tokens_details": {"cached_tokens": p + 1000}}, st.integers(0, 100)),
    st.sampled_from(["usage", 5, [1, 2], True]),
    leaky,
)
oa_error_obj = st.fixed_dictionaries({}, optional={"message": st.one_of(leaky, code_like), "type": code_like,
                                                   "param": code_like, "code": code_like})
oa_error_json = st.one_of(
    st.builds(lambda e: {"error": e}, oa_error_obj),
    st.builds(lambda m: {"error": m}, st.one_of(leaky, code_like)),
    st.builds(lambda m: {"message": m, "type": "error"}, leaky),
)


@st.composite
def oa_error_plan(draw) -> Plan:
    status = draw(error_status)
    spaced = draw(st.booleans())
    if draw(st.integers(0, 3)) == 0:
        body, ctype = draw(non_json_st), draw(st.sampled_from(["text/html", "text/plain", "application/json"]))
    else:
        body, ctype = dump(draw(oa_error_json), spaced), "application/json"
    return Plan(status, body.encode(), ctype, cuts=draw(cuts_st), label="error")


@st.composite
def oa_completion_plan(draw, echo: bool = False) -> Plan:
    spaced = draw(st.booleans())
    text = draw(text_st(echo))
    obj = _compact({"id": draw(st.one_of(st.just("chatcmpl-1"), text_st(echo))), "object": "chat.completion",
                    "created": 1, "model": draw(model_st),
                    "system_fingerprint": draw(optional(text_st(echo))),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": draw(st.sampled_from(["stop", "length"]))}],
                    "usage": draw(oa_usage)})
    shape = draw(st.sampled_from(["ok"] * 6 + ["no_choices", "choices_str", "list", "truncated", "html"]))
    if shape == "no_choices":
        obj.pop("choices")
    elif shape == "choices_str":
        obj["choices"] = draw(text_st(echo))
    body = dump([obj] if shape == "list" else obj, spaced)
    if shape == "truncated":
        body = body[: len(body) // 2]
    elif shape == "html":
        body = draw(non_json_st)
    drop = draw(st.one_of(st.none(), st.integers(0, 999))) if draw(st.integers(0, 9)) == 0 else None
    return Plan(draw(ok_status), body.encode(), cuts=draw(cuts_st), pause=draw(pause_st), drop_at=drop,
                label=f"completion:{shape}")


def _sse(payloads: list[str], sep: str, eol: str, blank: bool, comments: bool, events: bool) -> str:
    out = []
    for p in payloads:
        if comments:
            out.append(": keep-alive" + eol + eol)
        if events:
            out.append("event: completion.chunk" + eol)
        out.append(f"data:{sep}{p}{eol}" + (eol if blank else ""))
    return "".join(out)


framing_st = st.fixed_dictionaries({
    "sep": st.sampled_from([" ", " ", "", "  "]), "eol": st.sampled_from(["\n", "\n", "\r\n"]),
    "blank": st.sampled_from([True, True, True, False]), "comments": st.booleans(), "events": st.booleans()})


@st.composite
def oa_stream_plan(draw, echo: bool = False) -> Plan:
    spaced = draw(st.booleans())
    model = draw(model_st)
    cid = draw(st.one_of(st.just("chatcmpl-1"), text_st(echo)))

    def chunk(delta: dict, finish: str | None = None) -> dict:
        return {"id": cid, "object": "chat.completion.chunk", "created": 1, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    objs: list[object] = [chunk({"role": "assistant", "content": ""})]
    objs += [chunk({"content": draw(text_st(echo))}) for _ in range(draw(st.integers(0, 3)))]
    objs.append(chunk({}, "stop"))
    usage = draw(oa_usage)
    if usage is not MISSING:
        objs.append({"id": cid, "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [],
                     "usage": usage})
    payloads = [dump(o, spaced) for o in objs]
    err = draw(st.one_of(st.none(), oa_error_json))
    if err is not None:
        if draw(st.booleans()):
            err = {"id": cid, "object": "chat.completion.chunk", **err}  # an error chunk starting with {"id"
        payloads.insert(draw(st.integers(0, len(payloads))), dump(err, spaced))
    if draw(st.integers(0, 7)) == 0:
        payloads.insert(draw(st.integers(0, len(payloads))), "{not json " + draw(leaky))
    if draw(st.integers(0, 5)):
        payloads.append("[DONE]")
        after = draw(st.sampled_from([None, None, None, "usage", "error", "chunk"]))
        if after == "usage":
            payloads.append(dump({"choices": [], "model": model, "usage": {
                "prompt_tokens": 10**9, "completion_tokens": 10**9, "total_tokens": 2 * 10**9}}, spaced))
        elif after == "error":
            payloads.append(dump({"error": {"message": draw(leaky), "code": draw(code_like)}}, spaced))
        elif after == "chunk":
            payloads.append(dump(chunk({"content": draw(text_st(echo))}), spaced))
    body = _sse(payloads, **draw(framing_st))
    status = draw(ok_status)
    drop = draw(st.integers(0, 999)) if draw(st.integers(0, 7)) == 0 else None
    ctype = draw(st.sampled_from(["text/event-stream"] * 9 + ["application/json"]))
    return Plan(status, body.encode(), ctype, cuts=draw(cuts_st), pause=draw(pause_st), drop_at=drop,
                client_usage=draw(st.booleans()), label="stream")


def oa_plans(stream: bool, echo: bool = False) -> st.SearchStrategy[Plan]:
    ok = oa_stream_plan(echo) if stream else oa_completion_plan(echo)
    return st.one_of(ok, ok, oa_error_plan(), oa_completion_plan(echo) if stream else oa_error_plan())


# ---------------------------------------------------------------- Anthropic format

ANTHROPIC_TYPES = ["invalid_request_error", "authentication_error", "permission_error", "billing_error",
                   "not_found_error", "request_too_large", "rate_limit_error", "api_error", "overloaded_error"]
an_one_bad = one_bad(AN_SANE, list(AN_SANE))
an_usage = st.one_of(
    an_one_bad, an_one_bad, an_one_bad,
    st.just(MISSING), st.just(None), st.just({}),
    st.fixed_dictionaries({}, optional={k: token for k in (
        "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")}),
    st.builds(lambda i: {"input_tokens": i, "output_tokens": 3, "cache_read_input_tokens": i + 1000,
                         "cache_creation_input_tokens": -i - 1}, st.integers(0, 100)),
    st.sampled_from(["usage", 5, [1, 2]]),
    leaky,
)
an_error_obj = st.fixed_dictionaries({"type": st.one_of(st.sampled_from(ANTHROPIC_TYPES), code_like)},
                                     optional={"message": st.one_of(leaky, code_like)})
an_error_json = st.one_of(
    st.builds(lambda e: {"type": "error", "error": e}, an_error_obj),
    st.builds(lambda m: {"type": "error", "error": m}, st.one_of(leaky, code_like)),
    st.builds(lambda e: {"error": e}, oa_error_obj),
)


@st.composite
def an_error_plan(draw) -> Plan:
    status = draw(error_status)
    if draw(st.integers(0, 3)) == 0:
        body, ctype = draw(non_json_st), draw(st.sampled_from(["text/html", "text/plain", "application/json"]))
    else:
        body, ctype = dump(draw(an_error_json), draw(st.booleans())), "application/json"
    return Plan(status, body.encode(), ctype, cuts=draw(cuts_st), label="error")


@st.composite
def an_message_plan(draw, echo: bool = False) -> Plan:
    obj = _compact({"id": draw(st.one_of(st.just("msg_1"), text_st(echo))), "type": "message",
                    "role": "assistant", "model": draw(model_st),
                    "content": [{"type": "text", "text": draw(text_st(echo))}],
                    "stop_reason": draw(st.sampled_from(["end_turn", "max_tokens", None])),
                    "stop_sequence": None, "usage": draw(an_usage)})
    shape = draw(st.sampled_from(["ok"] * 6 + ["content_str", "no_content", "error_in_200", "list", "truncated",
                                               "html"]))
    if shape == "content_str":
        obj["content"] = draw(text_st(echo))
    elif shape == "no_content":
        obj.pop("content")
    elif shape == "error_in_200":
        obj = draw(an_error_json)
    body = dump([obj] if shape == "list" else obj, draw(st.booleans()))
    if shape == "truncated":
        body = body[: len(body) // 2]
    elif shape == "html":
        body = draw(non_json_st)
    drop = draw(st.integers(0, 999)) if draw(st.integers(0, 9)) == 0 else None
    return Plan(draw(ok_status), body.encode(), cuts=draw(cuts_st), pause=draw(pause_st), drop_at=drop,
                label=f"message:{shape}")


@st.composite
def an_stream_plan(draw, echo: bool = False) -> Plan:
    spaced = draw(st.booleans())
    text = text_st(echo)
    events: list[tuple[str, object]] = [
        ("message_start", {"type": "message_start", "message": _compact({
            "id": draw(st.one_of(st.just("msg_1"), text)), "type": "message", "role": "assistant",
            "model": draw(model_st), "content": [], "stop_reason": None, "usage": draw(an_usage)})}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
    ]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": draw(text)}})
               for _ in range(draw(st.integers(0, 3)))]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    if draw(st.integers(0, 7)):
        events.append(("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                         "usage": draw(an_usage)}))
    if draw(st.integers(0, 7)):
        events.append(("message_stop", {"type": "message_stop"}))
        after = draw(st.sampled_from([None, None, None, "delta", "error"]))
        if after == "delta":
            events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                                             "usage": {"output_tokens": 10**9}}))
        elif after == "error":
            events.append(("error", draw(an_error_json)))
    err = draw(st.one_of(st.none(), an_error_json))
    if err is not None:
        events.insert(draw(st.integers(0, len(events))), ("error", err))
    payloads = [(name, dump(obj, spaced)) for name, obj in events]
    if draw(st.integers(0, 7)) == 0:
        payloads.insert(draw(st.integers(0, len(payloads))), ("content_block_delta", "{not json " + draw(leaky)))
    f = draw(framing_st)
    style = draw(st.sampled_from(["event: ", "event: ", "event:", None]))
    eol, out = f["eol"], []
    for name, p in payloads:
        if f["comments"]:
            out.append(": ping" + eol + eol)
        if style is not None:
            out.append(style + name + eol)
        out.append(f"data:{f['sep']}{p}{eol}" + (eol if f["blank"] else ""))
    drop = draw(st.integers(0, 999)) if draw(st.integers(0, 7)) == 0 else None
    ctype = draw(st.sampled_from(["text/event-stream"] * 9 + ["application/json"]))
    return Plan(draw(ok_status), "".join(out).encode(), ctype, cuts=draw(cuts_st), pause=draw(pause_st),
                drop_at=drop, label="stream")


def an_plans(stream: bool, echo: bool = False) -> st.SearchStrategy[Plan]:
    ok = an_stream_plan(echo) if stream else an_message_plan(echo)
    return st.one_of(ok, ok, an_error_plan(), an_message_plan(echo) if stream else an_error_plan())


# ---------------------------------------------------------------- explicit examples

def explicit(fmt: str, stream: bool) -> list[Plan]:
    """Negative usage, redirects, dropped connections, a stall past the read timeout, a slow answer: always run."""
    if fmt == "openai":
        ok = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,'
              b'"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}')
        sse = (b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
               b'"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
               b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
               b'"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}\n\ndata: [DONE]\n\n')
    else:
        ok = (b'{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text",'
              b'"text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":5,"output_tokens":2}}')
        sse = (b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
               b'"role":"assistant","model":"m","content":[],"usage":{"input_tokens":5,"output_tokens":1}}}\n\n'
               b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
               b'"content_block":{"type":"text","text":""}}\n\n'
               b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
               b'"delta":{"type":"text_delta","text":"hi"}}\n\n'
               b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
               b'"usage":{"output_tokens":2}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n')
    body, ctype = (sse, "text/event-stream") if stream else (ok, "application/json")
    # issue #10 defect 1: a negative count alone mints money
    negative = body.replace(b'"completion_tokens":2', b'"completion_tokens":-100000000').replace(
        b'"output_tokens":2}', b'"output_tokens":2,"cache_creation_input_tokens":-100000000}')
    return [
        Plan(200, negative, ctype, label="negative usage"),
        Plan(302, b"", "text/plain", redirect=True, label="redirect"),
        Plan(307, ok, "application/json", redirect=True, label="redirect"),
        Plan(308, b'{"error":{"message":"moved to @@SINK@@"}}', redirect=True, label="redirect"),
        Plan(200, body, ctype, cuts=(300, 600), drop_at=500, label="dropped"),
        Plan(200, body, ctype, drop_at=0, label="dropped"),
        Plan(200, body, ctype, cuts=(500,), stall=1.4, label="stall past read timeout"),
        Plan(200, body, ctype, cuts=(200, 400, 600, 800), pause=0.05, label="slow within bound"),
    ]
