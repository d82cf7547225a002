"""Every error row of the chat route: status, type, param and code, via the SDK and raw HTTP."""
import orjson
import openai
import pytest

from tests.harness import UPSTREAM_KEY, Gateway, gateway_settings

HI = [{"role": "user", "content": "hi"}]


def err(body: bytes) -> dict:
    return orjson.loads(body)["error"]


async def post(gateway, body, key, **headers):
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return await gateway.raw("POST", "/v1/chat/completions", data=data,
                             headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json", **headers})


async def test_auth_errors(gateway, upstream):
    s = await gateway.setup(upstream)
    for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "Basic abc"}):
        status, h, body = await gateway.raw("POST", "/v1/chat/completions", json={"model": "gpt-5.5", "messages": HI},
                                            headers=headers)
        assert status == 401 and "x-request-id" in h
        e = err(body)
        assert (e["type"], e["code"], e["param"]) == ("invalid_request_error", "invalid_api_key", None)
    with pytest.raises(openai.AuthenticationError):
        await gateway.client("sk-nope").chat.completions.create(model="gpt-5.5", messages=HI)
    # a revoked key stops working at once on this instance
    await gateway.admin("DELETE", f"/admin/keys/{s['key_id']}", expect=200)
    with pytest.raises(openai.AuthenticationError) as ei:
        await gateway.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
    assert ei.value.code == "invalid_api_key"


@pytest.mark.parametrize("body,param,code", [
    (b"{not json", None, "invalid_json"),
    ({"messages": HI}, "model", None),
    ({"model": "gpt-5.5"}, "messages", None),
    ({"model": "gpt-5.5", "messages": []}, "messages", None),
    ({"model": "gpt-5.5", "messages": HI, "temperature": 2.5}, "temperature", None),
    ({"model": "gpt-5.5", "messages": HI, "top_p": -0.1}, "top_p", None),
    ({"model": "gpt-5.5", "messages": HI, "presence_penalty": 3}, "presence_penalty", None),
    ({"model": "gpt-5.5", "messages": HI, "frequency_penalty": -2.01}, "frequency_penalty", None),
    ({"model": "gpt-5.5", "messages": HI, "n": 0}, "n", None),
    ({"model": "gpt-5.5", "messages": HI, "logprobs": True, "top_logprobs": 21}, "top_logprobs", None),
    ({"model": "gpt-5.5", "messages": HI, "stream_options": {"include_usage": True}}, "stream_options", None),
    ({"model": "gpt-5.5", "messages": HI, "temperature": "hot"}, "temperature", None),
    ({"model": "gpt-5.5", "messages": HI, "stream": "yes"}, "stream", None),
    ({"model": "gpt-5.5", "messages": HI, "bogus_field": 1}, "bogus_field", None),
    ({"model": "gpt-5.5", "messages": HI, "group": "nope"}, "group", "invalid_group"),
])
async def test_bad_requests(gateway, upstream, body, param, code):
    s = await gateway.setup(upstream)
    status, h, raw = await post(gateway, body, s["key"])
    assert status == 400, raw
    e = err(raw)
    assert e["type"] == "invalid_request_error" and e["param"] == param
    if code:
        assert e["code"] == code
    assert "x-request-id" in h
    assert await upstream.requests() == []  # nothing went upstream
    assert await gateway.usage(s["account_id"]) == []  # and no money moved


async def test_unknown_field_raises_sdk_bad_request(gateway, upstream):
    s = await gateway.setup(upstream)
    with pytest.raises(openai.BadRequestError) as ei:
        await gateway.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=HI,
                                                               extra_body={"not_a_param": True})
    assert ei.value.param == "not_a_param"


async def test_model_and_permission_errors(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    with pytest.raises(openai.NotFoundError) as ei:
        await client.chat.completions.create(model="gpt-unknown", messages=HI)
    assert (ei.value.code, ei.value.param) == ("model_not_found", "model")
    # a priced model no channel serves in this group is not found either
    await gateway.admin("PUT", "/admin/groups/vip", {"rpm": None}, expect=200)
    with pytest.raises(openai.NotFoundError) as ei:
        await client.chat.completions.create(model="gpt-5.5", messages=HI, extra_body={"group": "vip"})
    assert ei.value.code == "model_not_found"
    acc = s["account_id"]
    limited = await gateway.admin("POST", f"/admin/accounts/{acc}/keys",
                                  {"name": "r", "groups": ["default"], "models": ["gpt-4o"]}, expect=201)
    with pytest.raises(openai.PermissionDeniedError) as ei:
        await gateway.client(limited["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
    assert (ei.value.code, ei.value.param) == ("model_not_allowed", "model")
    limited = await gateway.admin("POST", f"/admin/accounts/{acc}/keys", {"name": "g", "groups": ["default"]},
                                  expect=201)
    with pytest.raises(openai.PermissionDeniedError) as ei:
        await gateway.client(limited["key"]).chat.completions.create(model="gpt-5.5", messages=HI,
                                                                     extra_body={"group": "vip"})
    assert (ei.value.code, ei.value.param) == ("group_not_allowed", "group")


async def test_body_too_large(upstream, sqlite_url):
    gw = await Gateway(gateway_settings(sqlite_url, max_body_bytes=2048)).start()
    try:
        s = await gw.setup(upstream)
        big = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "x" * 5000}]}
        status, h, raw = await post(gw, big, s["key"])
        assert status == 413
        assert err(raw)["code"] == "request_too_large" and err(raw)["type"] == "invalid_request_error"
    finally:
        await gw.stop()


async def test_default_body_limit_admits_a_million_token_context(gateway):
    # 1M tokens of English is about 4 MB; the default limit must leave room for it.
    assert gateway.settings.max_body_bytes >= 8 * 1024 * 1024


async def test_insufficient_balance(gateway, upstream):
    s = await gateway.setup(upstream, balance="0")
    status, h, raw = await post(gateway, {"model": "gpt-5.5", "messages": HI}, s["key"])
    assert status == 402 and h["x-should-retry"] == "false"
    e = err(raw)
    assert (e["type"], e["code"]) == ("insufficient_quota", "insufficient_balance")
    assert await upstream.requests() == []


@pytest.mark.parametrize("directive,status,code", [
    ("[mock status=500]", 502, "upstream_error"),
    ("[mock status=503]", 502, "upstream_error"),
    ("[mock status=401]", 502, "upstream_auth_failed"),
    ("[mock status=429]", 429, "upstream_rate_limited"),
])
async def test_upstream_http_errors(gateway, upstream, directive, status, code):
    s = await gateway.setup(upstream)
    before = await gateway.balance(s["account_id"])
    st, h, raw = await post(gateway, {"model": "gpt-5.5", "messages": [{"role": "user", "content": directive}]},
                            s["key"])
    assert st == status
    e = err(raw)
    assert e["code"] == code
    assert UPSTREAM_KEY not in raw.decode() and upstream.url not in raw.decode()
    assert await gateway.balance(s["account_id"]) == before  # failed calls cost nothing
    [rec] = await gateway.usage(s["account_id"])
    assert rec["status"] == "failed" and rec["cost_usd"] == "0.00"
    assert len(await upstream.requests()) == 1  # exactly one upstream POST, no retry
    assert await gateway.verify() == []


async def test_upstream_4xx_passes_through(gateway, upstream):
    s = await gateway.setup(upstream)
    content = "[mock status=400] [mock error_code=context_length_exceeded] [mock error_param=messages]"
    with pytest.raises(openai.BadRequestError) as ei:
        await gateway.client(s["key"]).chat.completions.create(
            model="gpt-5.5", messages=[{"role": "user", "content": content}])
    assert (ei.value.code, ei.value.param, ei.value.type) == ("context_length_exceeded", "messages",
                                                               "invalid_request_error")


async def test_upstream_unreachable_and_timeout(upstream, sqlite_url):
    gw = await Gateway(gateway_settings(sqlite_url, upstream_read_timeout=1)).start()
    try:
        s = await gw.setup(upstream)
        with pytest.raises(openai.APIStatusError) as ei:
            await gw.client(s["key"]).chat.completions.create(
                model="gpt-5.5", messages=[{"role": "user", "content": "[mock hang]"}])
        assert ei.value.status_code == 504 and ei.value.code == "upstream_timeout"
        await gw.admin("PATCH", f"/admin/channels/{s['channel_id']}", {"base_url": "http://127.0.0.1:1/v1"},
                       expect=200)
        with pytest.raises(openai.InternalServerError) as ei:
            await gw.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
        assert ei.value.status_code == 502 and ei.value.code == "upstream_unreachable"
        assert "127.0.0.1:1" not in str(ei.value.body)
        assert await gw.balance(s["account_id"]) == "10.00"
        assert await gw.verify() == []
    finally:
        await gw.stop()


async def test_mid_stream_failure_ends_with_error_event(gateway, upstream):
    s = await gateway.setup(upstream)
    client = gateway.client(s["key"])
    for directive in ("[mock error_event_after=2]", "[mock drop_after=2]"):
        stream = await client.chat.completions.create(
            model="gpt-5.5", messages=[{"role": "user", "content": directive + " [mock words=6]"}], stream=True)
        got = []
        with pytest.raises(openai.APIError):
            async for c in stream:
                got.append(c)
        assert len(got) >= 2
    assert await gateway.balance(s["account_id"]) == "10.00"  # not charged
    assert {r["status"] for r in await gateway.usage(s["account_id"])} == {"failed"}
    assert await gateway.verify() == []


async def test_wrong_method_and_unknown_route(gateway):
    status, h, raw = await gateway.raw("GET", "/v1/chat/completions")
    assert status == 405 and err(raw)["code"] == "method_not_allowed"
    status, h, raw = await gateway.raw("POST", "/v1/nothing-here")
    assert status == 404 and err(raw)["code"] == "unknown_url"
