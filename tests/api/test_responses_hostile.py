"""/v1/responses against a hostile upstream (tests/hostile.py): malformed answers and events, bad usage,
secrets echoed in output and errors, redirects, bad response ids; every case answers well-formed, leaks
nothing, credits no one, leaves no hold pending and keeps `ledger verify` green."""
from __future__ import annotations

import json

import orjson
import pytest

from tests.hostile import HOSTILE_KEY, json_answer, sse_answer, start_hostile


def resp_obj(text: str = "hi", usage: object = None, rid: str = "resp_h1", status: str = "completed",
             model: str = "upstream-model") -> dict:
    return {"id": rid, "object": "response", "created_at": 1, "status": status, "model": model,
            "output": [{"id": "msg_1", "type": "message", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}],
            "usage": usage}


def ev(kind: str, seq: int, **fields) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields, 'sequence_number': seq})}\n\n".encode()


def stream_frames(text: str = "hello", usage: object = None, terminal: str = "response.completed",
                  rid: str = "resp_h2") -> list[bytes]:
    start = {**resp_obj("", None, rid, "in_progress"), "output": []}
    frames = [ev("response.created", 0, response=start), ev("response.in_progress", 1, response=start)]
    frames += [ev("response.output_text.delta", 2 + i, item_id="msg_1", output_index=0, content_index=0,
                  delta=w, logprobs=[]) for i, w in enumerate(text.split(" "))]
    frames.append(ev(terminal, 2 + len(text.split(" ")),
                     response=resp_obj(text, usage, rid, terminal.split(".")[1])))
    return frames


def jsonh(*args, **kw):
    """A hostile handler answering this JSON."""
    async def handler(request):
        return json_answer(*args, **kw)
    return handler


GOOD_USAGE = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 4,
              "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 14}


@pytest.fixture
async def hostile(gateway):
    up = await start_hostile(jsonh(resp_obj(usage=GOOD_USAGE)))
    s = await gateway.setup(up, channel={"base_url": up.url + "/v1", "api_key": HOSTILE_KEY})
    yield up, s
    await up.close()


async def call(gateway, s, body: dict):
    return await gateway.raw("POST", "/v1/responses", data=orjson.dumps({"model": "gpt-5.5", **body}),
                             headers={"Authorization": f"Bearer {s['key']}", "Content-Type": "application/json"})


def no_secret(up, *blobs) -> None:
    for blob in blobs:
        text = blob.decode() if isinstance(blob, bytes) else str(blob)
        for form in up.secret_forms():
            assert form not in text, form


async def settled_clean(gateway, s) -> list[dict]:
    recs = await gateway.usage(s["account_id"])
    assert all(r["status"] != "pending" for r in recs)
    assert await gateway.verify() == []
    return recs


async def test_secrets_in_output_and_errors_are_scrubbed(gateway, hostile, caplog):
    up, s = hostile
    leak = f"key {HOSTILE_KEY} at {up.url}/v1"
    up.handler = jsonh(resp_obj(leak, GOOD_USAGE))
    status, headers, body = await call(gateway, s, {"input": "x"})
    assert status == 200
    no_secret(up, body, json.dumps(headers))

    async def streamed(r):
        return await sse_answer(r, stream_frames(leak, GOOD_USAGE))
    up.handler = streamed
    status, headers, body = await call(gateway, s, {"input": "x", "stream": True})
    assert status == 200 and b"response.completed" in body
    no_secret(up, body)
    up.handler = jsonh({"error": {"message": leak, "type": "invalid_request_error",
                                                  "param": HOSTILE_KEY, "code": "x" + HOSTILE_KEY}}, status=400)
    status, headers, body = await call(gateway, s, {"input": "x"})
    assert status == 400
    no_secret(up, body)

    async def err_event(r):
        return await sse_answer(r, stream_frames("a b")[:3] + [ev("error", 3, code="x", message=leak, param=None)])
    up.handler = err_event
    status, _, body = await call(gateway, s, {"input": "x", "stream": True})
    assert b"upstream_stream_error" in body
    no_secret(up, body, caplog.text)
    recs = await settled_clean(gateway, s)
    assert [r["status"] for r in recs].count("ok") == 2


@pytest.mark.parametrize("usage", [
    {"input_tokens": -5, "output_tokens": 3},
    {"input_tokens": 1.5, "output_tokens": 3},
    {"input_tokens": "9", "output_tokens": 3},
    {"input_tokens": 2**40, "output_tokens": 3},
    {"input_tokens": 5, "output_tokens": 3, "input_tokens_details": [1]},
    {"input_tokens": 5, "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 4}},
    "lots",
])
async def test_bad_usage_is_billed_on_our_count_and_hidden(gateway, hostile, usage):
    up, s = hostile
    up.handler = jsonh(resp_obj("one two three", usage))
    status, _, body = await call(gateway, s, {"input": "hello"})
    assert status == 200 and orjson.loads(body)["usage"] is None

    async def streamed(r):
        return await sse_answer(r, stream_frames("one two three", usage))
    up.handler = streamed
    status, _, body = await call(gateway, s, {"input": "hello", "stream": True})
    assert b'"usage":null' in body.split(b"response.completed")[-1]
    recs = await settled_clean(gateway, s)
    assert [r["status"] for r in recs] == ["ok", "ok"]
    assert all(0 < r["prompt_tokens"] < 100 and 0 < r["completion_tokens"] < 10 for r in recs)


@pytest.mark.parametrize("answer", [
    b"not json", b"[]", b'{"object": "chat.completion"}', b'{"object": "response", "output": 3}',
])
async def test_malformed_whole_answers_are_502_and_free(gateway, hostile, answer):
    up, s = hostile
    from aiohttp import web
    up.handler = lambda r: _raw(answer)
    status, _, body = await call(gateway, s, {"input": "x"})
    assert status == 502 and orjson.loads(body)["error"]["code"] == "upstream_bad_response"
    [rec] = await settled_clean(gateway, s)
    assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"
    del web


async def _raw(body: bytes):
    from aiohttp import web
    return web.Response(body=body, content_type="application/json")


@pytest.mark.parametrize("frames", [
    [b"event: response.created\ndata: {not json}\n\n"],
    [b"event: response.created\ndata: {\"type\": \"response.completed\", \"response\": {}}\n\n"],
    [b"event: response.output_text.delta\ndata: [1, 2]\n\n"],
    [b"data: {\"no\": \"type\"}\n\n"],
    stream_frames("a b c")[:-1],  # ends without a terminal event
])
async def test_malformed_streams_end_with_an_error_and_are_free(gateway, hostile, frames):
    up, s = hostile

    async def streamed(r):
        return await sse_answer(r, frames)
    up.handler = streamed
    status, _, body = await call(gateway, s, {"input": "x", "stream": True})
    last = [b for b in body.split(b"\n\n") if b.strip()][-1]
    assert last.startswith(b"event: error\n")
    [rec] = await settled_clean(gateway, s)
    assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"


async def test_redirect_is_not_followed(gateway, hostile):
    up, s = hostile
    from aiohttp import web
    up.handler = lambda r: _redirect()
    status, _, body = await call(gateway, s, {"input": "x"})
    assert status == 502 and orjson.loads(body)["error"]["code"] == "upstream_bad_response"
    assert [r["path"] for r in up.requests] == ["/v1/responses"]
    await settled_clean(gateway, s)
    del web


async def _redirect():
    from aiohttp import web
    return web.Response(status=307, headers={"Location": "http://127.0.0.1:1/steal"})


@pytest.mark.parametrize("rid", ["../../admin", "x" * 129, "", "a b", 7, None])
async def test_bad_response_ids_are_not_recorded(gateway, hostile, rid):
    up, s = hostile
    up.handler = jsonh(resp_obj(usage=GOOD_USAGE, rid=rid))
    status, _, body = await call(gateway, s, {"input": "x"})
    assert status == 200
    async with gateway.gw.engine.connect() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM responses")).scalar() == 0
    # a background answer without a usable id cannot be billed later: refused, nothing charged
    up.handler = jsonh({**resp_obj(rid=rid, status="queued"), "output": []})
    status, _, body = await call(gateway, s, {"input": "x", "background": True})
    assert status == 502
    recs = await settled_clean(gateway, s)
    assert sorted(r["status"] for r in recs) == ["failed", "ok"]
