"""Money through the whole gateway: exact charges, tiers, caps, refusals, disconnects, concurrency."""
import asyncio

import aiohttp
import openai
import orjson
import pytest

from reapi.billing.money import format_usd
from reapi.billing.tokens import count_prompt
from tests.harness import Gateway, gateway_settings

HI = [{"role": "user", "content": "hi"}]


def msg(text):
    return [{"role": "user", "content": text}]


async def test_exact_charge_and_headers(gateway, upstream):
    s = await gateway.setup(upstream)
    raw = await gateway.client(s["key"]).chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=msg("[mock prompt_tokens=1000] [mock words=10]"))
    resp = raw.parse()
    assert (resp.usage.prompt_tokens, resp.usage.completion_tokens) == (1000, 10)
    expected = 1000 * 5_000 + 10 * 30_000  # nano-USD at $5/M in, $30/M out
    assert raw.headers["x-reapi-cost-usd"] == format_usd(expected) == "0.0053"
    [rec] = await gateway.usage(s["account_id"])
    assert rec["cost_usd"] == "0.0053"
    assert await gateway.balance(s["account_id"]) == format_usd(10 * 10**9 - expected)
    ledger = (await gateway.admin("GET", f"/admin/accounts/{s['account_id']}/ledger"))["data"]
    kinds = [e["kind"] for e in reversed(ledger)]
    assert kinds == ["credit", "hold", "release", "charge"]
    assert ledger[0]["amount_usd"] == "-0.0053"
    assert await gateway.verify() == []


@pytest.mark.parametrize("prompt,long_tier", [(272_000, False), (272_001, True), (280_000, True)])
async def test_long_context_tier_follows_upstream_usage(gateway, upstream, prompt, long_tier):
    s = await gateway.setup(upstream)
    await gateway.client(s["key"]).chat.completions.create(
        model="gpt-5.5", messages=msg(f"[mock prompt_tokens={prompt}] [mock words=10]"))
    [rec] = await gateway.usage(s["account_id"])
    expected = prompt * 10_000 + 10 * 45_000 if long_tier else prompt * 5_000 + 10 * 30_000
    assert rec["cost_usd"] == format_usd(expected)


async def test_cached_tokens_bill_at_cached_rate(gateway, upstream):
    s = await gateway.setup(upstream)
    await gateway.client(s["key"]).chat.completions.create(
        model="gpt-5.5", messages=msg("[mock prompt_tokens=1000] [mock cached_tokens=600] [mock words=4]"))
    [rec] = await gateway.usage(s["account_id"])
    assert rec["cached_tokens"] == 600
    assert rec["cost_usd"] == format_usd(400 * 5_000 + 600 * 500 + 4 * 30_000)


async def test_output_cap_lowered_to_what_balance_pays(gateway, upstream):
    s = await gateway.setup(upstream, balance="0.01")
    raw = await gateway.client(s["key"]).chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=HI)
    cap = int(raw.headers["x-reapi-output-cap"])
    sent = (await upstream.requests())[-1]["body"]
    assert sent["max_completion_tokens"] == cap
    # the cap is the largest output the $0.01 pays for after the prompt's cost
    # (sized on the gateway's own prompt count, before the upstream reports usage)
    counted = count_prompt({"model": "gpt-5.5", "messages": HI})
    assert cap == (10_000_000 - counted * 5_000) // 30_000
    [rec] = await gateway.usage(s["account_id"])
    assert rec["hold_usd"] == format_usd(counted * 5_000 + cap * 30_000)
    assert float(raw.headers["x-reapi-balance-usd"]) >= 0
    assert await gateway.verify() == []


async def test_refused_when_prompt_cannot_be_paid(gateway, upstream):
    s = await gateway.setup(upstream, balance="0.000001")
    with pytest.raises(openai.APIStatusError) as ei:
        await gateway.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
    assert ei.value.status_code == 402 and ei.value.code == "insufficient_balance"
    assert ei.value.response.headers["x-should-retry"] == "false"
    assert await upstream.requests() == []
    assert await gateway.balance(s["account_id"]) == "0.000001"


async def test_key_spend_limit(gateway, upstream):
    s = await gateway.setup(upstream, key={"spend_limit_usd": "0.0004"})
    client = gateway.client(s["key"])
    # each call costs 12ish prompt tokens + 12 output = ~0.00042: the first fits (cap lowered), later ones not
    for _ in range(3):
        try:
            await client.chat.completions.create(model="gpt-5.5", messages=HI, max_tokens=5)
        except openai.APIStatusError as e:
            assert e.status_code == 402 and e.code == "key_spend_limit_reached"
            break
    else:
        pytest.fail("spend limit never reached")
    spent = sum(int(round(float(r["cost_usd"]) * 1e9)) for r in await gateway.usage(s["account_id"]))
    assert 0 < spent <= 400_000
    assert await gateway.verify() == []


async def test_client_disconnect_cancels_upstream_and_charges_produced(gateway, upstream):
    s = await gateway.setup(upstream)
    body = {"model": "gpt-5.5", "stream": True,
            "messages": msg("[mock words=60] [mock chunk_delay_ms=50] [mock prompt_tokens=100]")}
    n = 5
    got = 0
    async with aiohttp.ClientSession() as session:
        async with session.post(gateway.url + "/v1/chat/completions", json=body,
                                headers={"Authorization": f"Bearer {s['key']}"}) as r:
            async for line in r.content:
                if line.startswith(b"data: {") and b'"content":"' in line and b'"content":""' not in line:
                    got += 1
                    if got == n:
                        break
            r.connection.transport.abort() if r.connection else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 1.0
    while (await upstream.stats())["streams_cancelled"] < 1:
        assert loop.time() < deadline, "upstream stream not cancelled within 1 s"
        await asyncio.sleep(0.02)
    for _ in range(50):
        recs = await gateway.usage(s["account_id"])
        if recs and recs[0]["status"] != "pending":
            break
        await asyncio.sleep(0.02)
    [rec] = recs
    assert rec["status"] == "client_closed"
    assert n <= rec["completion_tokens"] <= n + 1  # at most one chunk was in flight
    tokens_prompt = rec["prompt_tokens"]
    assert rec["cost_usd"] == format_usd(tokens_prompt * 5_000 + rec["completion_tokens"] * 30_000)
    assert await gateway.verify() == []


async def concurrent_burst(gw: Gateway, key: str, n: int) -> list[int]:
    body = orjson.dumps({"model": "gpt-5.5", "max_tokens": 100,
                         "messages": msg("[mock words=100] [mock prompt_tokens=10]")})
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one():
            async with session.post(gw.url + "/v1/chat/completions", data=body,
                                    headers={"Authorization": f"Bearer {key}",
                                             "Content-Type": "application/json"}) as r:
                await r.read()
                return r.status
        return await asyncio.gather(*(one() for _ in range(n)))


async def test_200_concurrent_requests_never_overdraw(store_url, upstream):
    gw = await Gateway(gateway_settings(store_url)).start()
    try:
        # worst case per call: ~10 prompt tokens (our count of this short prompt) + 100 output at $30/M
        s = await gw.setup(upstream, balance="0.0615")
        statuses = await concurrent_burst(gw, s["key"], 200)
        ok = statuses.count(200)
        assert set(statuses) <= {200, 402}
        assert 15 <= ok <= 25, statuses
        recs = await gw.usage(s["account_id"])
        charged = sum(int(round(float(r["cost_usd"]) * 1e9)) for r in recs)
        balance = int(round(float(await gw.balance(s["account_id"])) * 1e9))
        assert balance >= 0
        assert balance + charged == 61_500_000
        assert await gw.verify() == []
    finally:
        await gw.stop()
