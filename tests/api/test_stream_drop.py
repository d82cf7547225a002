"""An upstream that drops its connection mid-answer is reported as upstream_stream_error (not
upstream_unreachable) on both routes, streamed and not, and the call is not charged."""
import asyncio

import orjson
import pytest
from aiohttp import web

from tests.api.test_messages_route import MODEL, PRICE, setup as claude_setup, user
from tests.hostile import HOSTILE_KEY, start_hostile

DROP = "hi [mock drop_after=2] [mock words=8]"


async def sse_events(gateway, path, body, headers):
    async with gateway.http.post(gateway.url + path, json=body, headers=headers) as r:
        assert r.status == 200
        return (await r.read()).decode()


async def test_chat_stream_drop_is_a_stream_error(gateway, upstream):
    s = await gateway.setup(upstream)
    raw = await sse_events(gateway, "/v1/chat/completions",
                           {"model": "gpt-5.5", "stream": True, "messages": user(DROP)},
                           {"Authorization": f"Bearer {s['key']}"})
    last = [line for line in raw.split("\n") if line.startswith("data: ")][-1]
    err = orjson.loads(last[6:])["error"]
    assert (err["type"], err["code"]) == ("upstream_error", "upstream_stream_error")
    assert "[DONE]" not in raw
    [rec] = await gateway.usage(s["account_id"])
    assert (rec["status"], rec["error_code"], rec["cost_usd"]) == ("failed", "upstream_stream_error", "0.00")
    assert await gateway.balance(s["account_id"]) == "10.00"
    assert await gateway.verify() == []


async def test_messages_stream_drop_is_a_stream_error(gateway, upstream):
    s = await claude_setup(gateway, upstream)
    raw = await sse_events(gateway, "/v1/messages",
                           {"model": MODEL, "max_tokens": 50, "stream": True, "messages": user(DROP)},
                           {"x-api-key": s["key"]})
    assert "event: message_start" in raw and "message_stop" not in raw
    assert raw.rstrip().split("\n")[-2] == "event: error"
    err = orjson.loads(raw.rstrip().split("\n")[-1][6:])
    assert err["type"] == "error" and err["error"]["type"] == "api_error"
    [rec] = await gateway.usage(s["account_id"])
    assert (rec["status"], rec["error_code"], rec["cost_usd"]) == ("failed", "upstream_stream_error", "0.00")
    assert await gateway.verify() == []


@pytest.mark.parametrize("route", ["chat", "messages"])
async def test_a_body_cut_mid_way_is_a_stream_error(gateway, route):
    """Non-streaming: the headers announce 4000 bytes, 20 come, then the connection closes."""
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                       "Content-Length": "4000"})
        await resp.prepare(request)
        await resp.write(b'{"id": "x", "content"')
        await asyncio.sleep(0.05)
        request.transport.close()
        return resp

    up = await start_hostile(handler)
    try:
        kind = "openai" if route == "chat" else "anthropic"
        await gateway.admin("PUT", f"/admin/models/{MODEL}", PRICE, expect=200)
        await gateway.admin("POST", "/admin/channels", {"name": "h", "type": kind, "base_url": up.url + "/v1",
                                                        "api_key": HOSTILE_KEY, "models": [MODEL]}, expect=201)
        acc = await gateway.admin("POST", "/admin/accounts", {"name": "a"}, expect=201)
        await gateway.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "1.00"}, expect=201)
        k = await gateway.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k"}, expect=201)
        if route == "chat":
            status, _, raw = await gateway.raw("POST", "/v1/chat/completions", json={
                "model": MODEL, "messages": user("hi")}, headers={"Authorization": f"Bearer {k['key']}"})
            assert status == 502 and orjson.loads(raw)["error"]["code"] == "upstream_stream_error", raw
        else:
            status, _, raw = await gateway.raw("POST", "/v1/messages", json={
                "model": MODEL, "max_tokens": 20, "messages": user("hi")}, headers={"x-api-key": k["key"]})
            assert status == 502 and orjson.loads(raw)["error"]["type"] == "api_error", raw
        [rec] = await gateway.usage(acc["id"])
        assert (rec["status"], rec["error_code"], rec["cost_usd"]) == ("failed", "upstream_stream_error", "0.00")
        for form in up.secret_forms():
            assert form not in raw.decode()
    finally:
        await up.close()


async def test_a_dead_port_is_still_unreachable(gateway, upstream):
    from tests.harness import free_port
    s = await gateway.setup(upstream, channel={"base_url": f"http://127.0.0.1:{free_port()}/v1"})
    status, _, raw = await gateway.raw("POST", "/v1/chat/completions", json={
        "model": "gpt-5.5", "messages": user("hi")}, headers={"Authorization": f"Bearer {s['key']}"})
    assert status == 502 and orjson.loads(raw)["error"]["code"] == "upstream_unreachable"
