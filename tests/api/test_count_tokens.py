"""POST /v1/messages/count_tokens: the anthropic SDK's messages.count_tokens through the gateway, free."""
import anthropic
import orjson
import pytest
from aiohttp import web

from tests.api.test_messages_route import MODEL, PRICE, TOOLS, client, setup, user
from tests.harness import UPSTREAM_KEY
from tests.hostile import HOSTILE_KEY, json_answer, start_hostile

SYSTEM = "You are terse. Answer in one line."


async def count_bodies(upstream):
    return [r for r in await upstream.requests() if r["path"] == "/v1/messages/count_tokens"]


async def test_count_matches_the_calls_input_tokens_and_is_free(store_url, upstream):
    from tests.harness import Gateway, gateway_settings
    gateway = await Gateway(gateway_settings(store_url)).start()
    try:
        s = await setup(gateway, upstream, key={"rpm": 1})
        c = client(gateway, s["key"])
        msgs = user("What is the weather in Paris today, and should I bring an umbrella?")
        counted = []
        for _ in range(3):  # rpm=1 on the key: counting is not a call, so none of these uses it up
            r = await c.messages.count_tokens(model=MODEL, system=SYSTEM, messages=msgs, tools=TOOLS)
            counted.append(r.input_tokens)
        assert len(set(counted)) == 1 and counted[0] > 10
        assert await gateway.balance(s["account_id"]) == "10.00"
        assert await gateway.usage(s["account_id"]) == []
        # the same prompt as a real call: the upstream's usage agrees with its count
        msg = await c.messages.create(model=MODEL, max_tokens=20, system=SYSTEM, messages=msgs,
                                      tools=TOOLS, tool_choice={"type": "none"})
        assert msg.usage.input_tokens == counted[0]
        [rec] = await gateway.usage(s["account_id"])
        assert rec["status"] == "ok"  # the one call the key's rpm allows
        fwd = (await count_bodies(upstream))[0]
        assert fwd["headers"]["x-api-key"] == UPSTREAM_KEY
        assert fwd["headers"]["anthropic-version"]  # the client's, passed on
        assert fwd["body"]["model"] == MODEL and fwd["body"]["system"] == SYSTEM
        assert fwd["body"]["tools"] == TOOLS
        assert await gateway.verify() == []
    finally:
        await gateway.stop()


async def test_bearer_auth_model_map_and_beta_header(gateway, upstream):
    s = await setup(gateway, upstream, channel={"model_map": {MODEL: "claude-sonnet-4-6-20260101"}})
    c = anthropic.AsyncAnthropic(base_url=gateway.url, auth_token=s["key"], max_retries=0)
    r = await c.messages.count_tokens(model=MODEL, messages=user("hi [mock prompt_tokens=4321]"),
                                      extra_headers={"anthropic-beta": "token-counting-2024-11-01"})
    assert r.input_tokens == 4321
    [fwd] = await count_bodies(upstream)
    assert fwd["body"]["model"] == "claude-sonnet-4-6-20260101"
    assert fwd["headers"]["anthropic-beta"] == "token-counting-2024-11-01"
    assert "authorization" not in fwd["headers"]  # the client's key never goes upstream


async def test_refusals_in_anthropics_envelope(gateway, upstream):
    s = await setup(gateway, upstream, key={"models": ["other-model"]})
    with pytest.raises(anthropic.AuthenticationError) as ei:
        await client(gateway, "sk-wrong").messages.count_tokens(model=MODEL, messages=user("hi"))
    assert ei.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.PermissionDeniedError):
        await client(gateway, s["key"]).messages.count_tokens(model=MODEL, messages=user("hi"))
    t = await gateway.admin("POST", f"/admin/accounts/{s['account_id']}/keys", {"name": "t"}, expect=201)
    c = client(gateway, t["key"])
    with pytest.raises(anthropic.NotFoundError):
        await c.messages.count_tokens(model="no-such-model", messages=user("hi"))
    with pytest.raises(anthropic.BadRequestError) as ei:
        await c.messages.count_tokens(model=MODEL, messages=[])
    assert ei.value.body["error"]["type"] == "invalid_request_error"
    status, _, raw = await gateway.raw("GET", "/v1/messages/count_tokens", headers={"x-api-key": t["key"]})
    assert status == 405 and orjson.loads(raw)["error"]["type"] == "invalid_request_error"
    # the upstream's own error, mapped as on /v1/messages
    with pytest.raises(anthropic.InternalServerError) as ei:
        await c.messages.count_tokens(model=MODEL, messages=user("hi [mock status=529]"))
    assert ei.value.status_code == 503 and ei.value.body["error"]["type"] == "overloaded_error"
    assert len(await count_bodies(upstream)) == 1
    assert await gateway.usage(s["account_id"]) == []


async def test_an_openai_channel_does_not_count(gateway, upstream):
    s = await gateway.setup(upstream, model=MODEL, price=PRICE)  # an openai-type channel
    with pytest.raises(anthropic.NotFoundError):
        await client(gateway, s["key"]).messages.count_tokens(model=MODEL, messages=user("hi"))
    assert await count_bodies(upstream) == []


@pytest.mark.parametrize("answer", [
    {"input_tokens": -1}, {"input_tokens": 1.5}, {"input_tokens": True}, {"input_tokens": "12"}, {},
    [12], {"input_tokens": 2**40}, "redirect", "huge", "not json"])
async def test_a_malformed_upstream_count_is_a_502_and_leaks_nothing(gateway, answer):
    async def handler(request: web.Request) -> web.StreamResponse:
        if answer == "redirect":
            return web.Response(status=307, headers={"Location": "http://127.0.0.1:9/steal"})
        if answer == "huge":
            return web.Response(body=b'{"input_tokens": 5, "pad": "' + b"x" * 200_000 + b'"}',
                                content_type="application/json")
        if answer == "not json":
            return web.Response(text="<html>" + HOSTILE_KEY + "</html>", content_type="text/html")
        return json_answer(answer)

    up = await start_hostile(handler)
    try:
        await gateway.admin("PUT", f"/admin/models/{MODEL}", PRICE, expect=200)
        await gateway.admin("POST", "/admin/channels", {
            "name": "h", "type": "anthropic", "base_url": up.url + "/v1", "api_key": HOSTILE_KEY,
            "models": [MODEL]}, expect=201)
        acc = await gateway.admin("POST", "/admin/accounts", {"name": "a"}, expect=201)
        k = await gateway.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k"}, expect=201)
        status, headers, raw = await gateway.raw(
            "POST", "/v1/messages/count_tokens", data=orjson.dumps({"model": MODEL, "messages": user("hi")}),
            headers={"x-api-key": k["key"], "content-type": "application/json"})
        assert status == 502, raw
        obj = orjson.loads(raw)
        assert obj["type"] == "error" and obj["error"]["type"] == "api_error"
        assert headers["x-request-id"].startswith("req_")
        for form in up.secret_forms():
            assert form not in raw.decode()
        assert [r["path"] for r in up.requests] == ["/v1/messages/count_tokens"]  # no redirect followed
    finally:
        await up.close()


async def test_bounded_in_time_and_body_and_free_at_a_zero_balance(sqlite_url, upstream):
    import time

    from tests.harness import Gateway, gateway_settings
    gateway = await Gateway(gateway_settings(sqlite_url, max_request_seconds=1, max_body_bytes=4096)).start()
    try:
        s = await setup(gateway, upstream, balance="0")
        c = client(gateway, s["key"])
        assert (await c.messages.count_tokens(model=MODEL, messages=user("hi [mock prompt_tokens=9]"))
                ).input_tokens == 9  # free: no balance needed
        started = time.monotonic()
        with pytest.raises(anthropic.APIStatusError) as ei:
            await c.messages.count_tokens(model=MODEL, messages=user("hi [mock delay_ms=5000]"))
        assert ei.value.status_code == 504 and ei.value.body["error"]["type"] == "timeout_error"
        assert time.monotonic() - started < 3
        with pytest.raises(anthropic.APIStatusError) as ei:
            await c.messages.count_tokens(model=MODEL, messages=user("x" * 5000))
        assert ei.value.status_code == 413 and ei.value.body["error"]["type"] == "request_too_large"
        assert await gateway.usage(s["account_id"]) == []
    finally:
        await gateway.stop()


def test_the_app_imports_count_tokens_only_on_its_first_call():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", "import sys, reapi.app; print('reapi.api.count_tokens' in sys.modules)"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
