"""GET /v1/models in both shapes (anthropic SDK with x-api-key only, openai SDK) and model aliases: an
alias routes, bills and is allowed as its model, and the answer echoes the name the client sent."""
import asyncio
import time
from datetime import datetime, timezone

import anthropic
import orjson
import pytest

from reapi.billing.money import format_usd
from tests.api.test_messages_route import MODEL, PRICE, client, user
from tests.harness import UPSTREAM_KEY, Gateway, gateway_settings

UPSTREAM_NAME = "claude-sonnet-4-6-20260101"
ALIASES = ["sonnet", "claude-sonnet-latest"]


async def priced(gateway, model, price, aliases=None, expect=200):
    return await gateway.admin("PUT", f"/admin/models/{model}", {**price, **({"aliases": aliases}
                                                                           if aliases is not None else {})},
                               expect=expect)


async def claude_setup(gateway, upstream, key=None):
    """Two Claude models on one anthropic channel (the first with aliases), a funded account and a key."""
    t0 = int(time.time())
    await priced(gateway, MODEL, PRICE, ALIASES)
    await priced(gateway, "claude-haiku-4-5", {**PRICE, "input_usd_per_mtok": "1.00", "max_output_tokens": 8_000})
    ch = await gateway.admin("POST", "/admin/channels", {
        "name": "claude", "type": "anthropic", "base_url": upstream.url, "api_key": UPSTREAM_KEY,
        "models": [MODEL, "claude-haiku-4-5"], "model_map": {MODEL: UPSTREAM_NAME}}, expect=201)
    acc = await gateway.admin("POST", "/admin/accounts", {"name": "acme"}, expect=201)
    await gateway.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "10.00"}, expect=201)
    k = await gateway.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k", **(key or {})}, expect=201)
    return {"account_id": acc["id"], "key": k["key"], "channel_id": ch["id"], "t0": t0}


async def test_anthropic_sdk_lists_and_retrieves_with_x_api_key_only(gateway, upstream):
    s = await claude_setup(gateway, upstream)
    t1 = int(time.time()) + 1
    c = client(gateway, s["key"])  # the anthropic SDK: x-api-key and anthropic-version, no Bearer
    models = [m async for m in c.models.list()]
    assert sorted(m.id for m in models) == ["claude-haiku-4-5", MODEL]  # aliases are not listed
    for m in models:
        assert m.type == "model" and m.display_name == m.id and m.lifecycle == "active"
        assert s["t0"] <= m.created_at.timestamp() <= t1 and m.created_at.tzinfo is not None
    assert {m.id: (m.max_input_tokens, m.max_tokens) for m in models} == {
        MODEL: (200_000, 64_000), "claude-haiku-4-5": (200_000, 8_000)}
    # paging by one: has_more, first_id and last_id as Anthropic's, every model once
    first = await c.models.list(limit=1)
    assert len(first.data) == 1 and first.has_more and first.first_id == first.last_id == first.data[0].id
    paged = [m.id async for m in await c.models.list(limit=1)]
    assert sorted(paged) == sorted(m.id for m in models)
    status, _, raw = await gateway.raw("GET", "/v1/models?limit=5000", headers={"x-api-key": s["key"],
                                                                                "anthropic-version": "2023-06-01"})
    assert status == 400 and orjson.loads(raw)["error"]["type"] == "invalid_request_error"
    one = await c.models.retrieve(MODEL)
    assert one.id == MODEL and one.type == "model"
    assert (await c.models.retrieve("sonnet")).id == MODEL  # an alias answers its model's entry
    with pytest.raises(anthropic.NotFoundError) as ei:
        await c.models.retrieve("gpt-4o")
    assert ei.value.body["type"] == "error" and ei.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.AuthenticationError) as ei:
        await client(gateway, "sk-nope").models.list()
    assert ei.value.body["error"]["type"] == "authentication_error"
    assert ei.value.body["request_id"] == ei.value.response.headers["x-request-id"]


async def test_openai_shape_has_a_real_created_and_accepts_x_api_key(gateway, upstream):
    s = await claude_setup(gateway, upstream)
    listing = await gateway.client(s["key"]).models.list()
    assert [m.id for m in listing.data] == ["claude-haiku-4-5", MODEL]
    assert all(s["t0"] <= m.created <= time.time() + 1 and m.owned_by == "reapi" for m in listing.data)
    status, _, raw = await gateway.raw("GET", "/v1/models", headers={"x-api-key": s["key"]})
    assert status == 200 and orjson.loads(raw)["object"] == "list"
    status, _, raw = await gateway.raw("GET", "/v1/models/sonnet", headers={"x-api-key": s["key"]})
    assert status == 200 and orjson.loads(raw)["id"] == MODEL
    status, _, raw = await gateway.raw("GET", "/v1/models", headers={"x-api-key": "sk-nope"})
    assert status == 401 and orjson.loads(raw)["error"]["code"] == "invalid_api_key"
    status, _, raw = await gateway.raw("POST", "/v1/models", headers={"x-api-key": s["key"]})
    assert status == 405 and orjson.loads(raw)["error"]["code"] == "method_not_allowed"
    status, _, raw = await gateway.raw("DELETE", "/v1/models/sonnet", headers={"x-api-key": s["key"],
                                                                             "anthropic-version": "2023-06-01"})
    assert status == 405 and orjson.loads(raw)["error"]["type"] == "invalid_request_error"


async def test_a_keys_allow_list_and_groups_shape_the_list(gateway, upstream):
    s = await claude_setup(gateway, upstream, key={"models": ["sonnet"]})  # the alias admits its model
    c = client(gateway, s["key"])
    assert [m.id async for m in c.models.list()] == [MODEL]
    msg = await c.messages.create(model=MODEL, max_tokens=10, messages=user("hi"))
    assert msg.model == MODEL
    with pytest.raises(anthropic.PermissionDeniedError):
        await c.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=user("hi"))


async def test_prices_change_the_list_at_the_next_snapshot(gateway, upstream):
    s = await claude_setup(gateway, upstream)
    oai = gateway.client(s["key"])
    before = {m.id: m.created for m in (await oai.models.list()).data}
    await priced(gateway, "claude-haiku-4-5", PRICE)  # a re-price keeps the model's first date
    await priced(gateway, "claude-opus-4-8", PRICE)  # priced, but no channel: not listed
    for _ in range(50):
        got = {m.id: m.created for m in (await oai.models.list()).data}
        models = [m async for m in client(gateway, s["key"]).models.list()]
        if models and models[0].max_tokens == 64_000 and got == before:
            break
        await asyncio.sleep(0.05)
    assert got == before
    assert {m.id: m.max_tokens for m in models} == {MODEL: 64_000, "claude-haiku-4-5": 64_000}


async def test_alias_round_trip_bills_at_the_models_price(store_url, upstream):
    gateway = await Gateway(gateway_settings(store_url)).start()
    try:
        s = await claude_setup(gateway, upstream, key={"models": [MODEL]})  # the model admits its aliases
        c = client(gateway, s["key"])
        msg = await c.messages.create(model="sonnet", max_tokens=50,
                                      messages=user("hi [mock prompt_tokens=1000] [mock words=10]"))
        assert msg.model == "sonnet"  # what the client sent
        async with c.messages.stream(model="claude-sonnet-latest", max_tokens=50,
                                     messages=user("hi [mock prompt_tokens=1000] [mock words=10]")) as stream:
            final = await stream.get_final_message()
        assert final.model == "claude-sonnet-latest"
        chat = await gateway.client(s["key"]).chat.completions.create(
            model="sonnet", max_tokens=50, messages=user("hi [mock prompt_tokens=1000] [mock words=10]"))
        assert chat.model == "sonnet"
        counted = await c.messages.count_tokens(model="sonnet", messages=user("hi [mock prompt_tokens=77]"))
        assert counted.input_tokens == 77
        sent = [r["body"]["model"] for r in await upstream.requests() if r["path"].startswith("/v1/messages")]
        assert sent == [UPSTREAM_NAME] * 4  # the model's upstream name, whatever the alias
        recs = await gateway.usage(s["account_id"])
        assert len(recs) == 3
        expected = format_usd(1000 * 3000 + 10 * 15000)  # $3/M in, $15/M out: the model's price
        for rec in recs:
            assert (rec["status"], rec["model"], rec["prompt_tokens"], rec["completion_tokens"]) == (
                "ok", MODEL, 1000, 10), rec
            assert rec["cost_usd"] == expected
        assert await gateway.balance(s["account_id"]) == format_usd(10 * 10**9 - 3 * (1000 * 3000 + 10 * 15000))
        assert await gateway.verify() == []
    finally:
        await gateway.stop()


async def test_alias_names_are_unique_across_the_rate_card(gateway, upstream):
    await priced(gateway, MODEL, PRICE, ALIASES)
    await priced(gateway, "claude-haiku-4-5", PRICE)
    for model, aliases in ((("claude-haiku-4-5", ["sonnet"])), ("claude-haiku-4-5", [MODEL]),
                           ("sonnet", []), ("claude-sonnet-latest", ["x"])):
        err = (await priced(gateway, model, PRICE, aliases, expect=409))["error"]
        assert err["code"] == "model_name_taken" and err["param"] == "aliases"
    err = (await priced(gateway, "claude-haiku-4-5", PRICE, ["claude-haiku-4-5"], expect=400))["error"]
    assert err["param"] == "aliases"
    err = (await priced(gateway, "claude-haiku-4-5", PRICE, ["bad\nname"], expect=400))["error"]
    assert err["param"].startswith("aliases")
    view = await priced(gateway, MODEL, PRICE, ["sonnet", "sonnet", "s4"])  # a PUT replaces the set
    assert view["aliases"] == ["s4", "sonnet"]
    await priced(gateway, "claude-haiku-4-5", PRICE, ["claude-sonnet-latest"])  # freed by the PUT above
    listed = {m["model"]: m["aliases"] for m in (await gateway.admin("GET", "/admin/models"))["data"]}
    assert listed == {MODEL: ["s4", "sonnet"], "claude-haiku-4-5": ["claude-sonnet-latest"]}


async def test_public_pricing_shows_aliases(gateway, upstream):
    await claude_setup(gateway, upstream)
    status, _, raw = await gateway.raw("GET", "/pricing")
    rows = {r["model"]: r for r in orjson.loads(raw)["data"]}
    assert status == 200 and set(rows) == {MODEL, "claude-haiku-4-5"}  # aliases are not rows of their own
    assert rows[MODEL]["aliases"] == sorted(ALIASES) and rows["claude-haiku-4-5"]["aliases"] == []
    assert rows[MODEL]["input_usd_per_mtok"] == "3.00"


def test_rfc3339_is_utc_seconds():
    from reapi.api.models import rfc3339
    assert rfc3339(1_767_225_600) == "2026-01-01T00:00:00Z"
    assert datetime.fromisoformat(rfc3339(0).replace("Z", "+00:00")) == datetime(1970, 1, 1, tzinfo=timezone.utc)


async def test_an_alias_on_an_openai_channel_streams_and_echoes(gateway, upstream):
    s = await gateway.setup(upstream)  # gpt-5.5 on an openai channel
    view = await gateway.admin("GET", "/admin/models")
    row = {k: v for k, v in view["data"][0].items() if k != "model"}
    await gateway.admin("PUT", "/admin/models/gpt-5.5", {**row, "aliases": ["gpt"]}, expect=200)
    oai = gateway.client(s["key"])
    for _ in range(50):  # the next catalog snapshot knows the alias
        if "gpt" in gateway.gw.catalog.snapshot.aliases:
            break
        await asyncio.sleep(0.05)
    stream = await oai.chat.completions.create(model="gpt", messages=user("hi [mock words=3]"), stream=True,
                                               stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    assert {c.model for c in chunks} == {"gpt"}
    [sent] = [r for r in await upstream.requests() if r["path"] == "/v1/chat/completions"]
    assert sent["body"]["model"] == "gpt-5.5"
    [rec] = await gateway.usage(s["account_id"])
    assert rec["model"] == "gpt-5.5" and rec["status"] == "ok"
