"""Stored responses and background billing on SQLite and PostgreSQL: retrieve, delete, cancel,
input_items and previous_response_id go to the channel that made the response, only for its own account;
a background response is billed once when its end is seen, a cancelled one is free."""
from __future__ import annotations

import asyncio

import openai
import pytest

from reapi.billing.money import format_usd
from reapi.proxy import responses as flow
from tests.harness import Gateway, gateway_settings


def cost(prompt: int, completion: int, cached: int = 0) -> int:
    return -(-((prompt - cached) * 5_000_000_000 + cached * 500_000_000 + completion * 30_000_000_000)
             // 1_000_000)


@pytest.fixture
async def gw(store_url):
    g = await Gateway(gateway_settings(store_url)).start()
    yield g
    await g.stop()


async def second_account(gw: Gateway) -> str:
    acc = await gw.admin("POST", "/admin/accounts", {"name": "other"}, expect=201)
    await gw.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "5.00"}, expect=201)
    return (await gw.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "o"}, expect=201))["key"]


async def paths(upstream) -> list[str]:
    return [r["path"] for r in await upstream.requests()]


async def settled(gw: Gateway, account_id: int, request_id: str, timeout: float = 5.0) -> dict:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        rec = next(r for r in await gw.usage(account_id) if r["request_id"] == request_id)
        if rec["status"] != "pending" or loop.time() > end:
            return rec
        await asyncio.sleep(0.05)


async def test_retrieve_items_delete_and_chain_go_to_the_channel(gw, upstream):
    s = await gw.setup(upstream)
    client = gw.client(s["key"])
    r = await client.responses.create(model="gpt-5.5", input=[{"role": "user", "content": "one [mock words=3]"}])
    got = await client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text and got.model == "gpt-5.5"
    items = await client.responses.input_items.list(r.id)
    assert [i.content[0].text for i in items.data] == ["one [mock words=3]"]
    chained = await client.responses.create(model="gpt-5.5", input="two [mock words=2]", previous_response_id=r.id)
    assert chained.previous_response_id == r.id
    # a streamed response is recorded from its response.created event
    stream = await client.responses.create(model="gpt-5.5", input="three [mock words=2]", stream=True)
    sid = [e async for e in stream][0].response.id
    assert (await client.responses.retrieve(sid)).status == "completed"
    await client.responses.delete(r.id)
    n = len(await paths(upstream))
    with pytest.raises(openai.NotFoundError) as err:
        await client.responses.retrieve(r.id)  # forgotten by the gateway: the upstream is not asked
    assert err.value.code == "response_not_found"
    assert len(await paths(upstream)) == n
    # store: false is not recorded: a retrieve is 404 without asking the upstream
    unstored = await client.responses.create(model="gpt-5.5", input="x [mock words=2]", store=False)
    n = len(await paths(upstream))
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(unstored.id)
    assert len(await paths(upstream)) == n
    # the stored routes are free: only the creates are usage records
    assert len(await gw.usage(s["account_id"])) == 4
    assert await gw.verify() == []


async def test_another_accounts_id_is_404_and_never_reaches_the_upstream(gw, upstream):
    s = await gw.setup(upstream)
    mine = await gw.client(s["key"]).responses.create(model="gpt-5.5", input="secret [mock words=2]")
    other = gw.client(await second_account(gw))
    before = await paths(upstream)
    for attempt in (other.responses.retrieve(mine.id), other.responses.delete(mine.id),
                    other.responses.cancel(mine.id), other.responses.input_items.list(mine.id)):
        with pytest.raises(openai.NotFoundError) as err:
            await attempt
        assert err.value.code == "response_not_found" and mine.id not in str(err.value.body.get("param"))
    with pytest.raises(openai.NotFoundError) as err:
        await other.responses.create(model="gpt-5.5", input="x", previous_response_id=mine.id)
    assert err.value.code == "previous_response_not_found" and err.value.param == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        await other.responses.retrieve("resp_does_not_exist")
    after = await paths(upstream)
    assert after == before  # not one request reached the upstream
    assert not [p for p in after if mine.id in p]
    # the owner still has it
    assert (await gw.client(s["key"]).responses.retrieve(mine.id)).id == mine.id
    # a key is needed
    status, _, body = await gw.raw("GET", f"/v1/responses/{mine.id}")
    assert status == 401 and b"invalid_api_key" in body


async def test_background_is_billed_once_when_a_retrieve_sees_it_finish(gw, upstream, monkeypatch):
    monkeypatch.setattr(flow, "POLL_FIRST_S", 60.0)  # this test's retrieves see the end, not the poller
    s = await gw.setup(upstream)
    client = gw.client(s["key"])
    raw = await client.responses.with_raw_response.create(
        model="gpt-5.5", input="bg [mock words=9 prompt_tokens=500 cached_tokens=100]", background=True,
        max_output_tokens=1000)
    bg = raw.parse()
    assert bg.status == "queued" and bg.usage is None and "x-reapi-cost-usd" not in raw.headers
    [rec] = await gw.usage(s["account_id"])
    assert rec["status"] == "pending" and rec["request_id"] == raw.headers["x-request-id"]
    balance_held = raw.headers["x-reapi-balance-usd"]
    assert await gw.balance(s["account_id"]) == balance_held  # the hold is still taken
    assert (await client.responses.retrieve(bg.id)).status == "in_progress"
    assert (await gw.usage(s["account_id"]))[0]["status"] == "pending"
    done = await client.responses.retrieve(bg.id)
    assert done.status == "completed" and done.usage.output_tokens == 9
    [rec] = await gw.usage(s["account_id"])
    expected = cost(500, 9, cached=100)
    assert rec["status"] == "ok" and rec["cost_usd"] == format_usd(expected)
    assert (rec["prompt_tokens"], rec["completion_tokens"], rec["cached_tokens"]) == (500, 9, 100)
    await client.responses.retrieve(bg.id)  # seen again: not charged twice
    assert await gw.balance(s["account_id"]) == format_usd(10 * 10**9 - expected)
    assert await gw.verify() == []


async def test_background_cancelled_before_output_is_free(gw, upstream, monkeypatch):
    monkeypatch.setattr(flow, "POLL_FIRST_S", 60.0)
    s = await gw.setup(upstream)
    client = gw.client(s["key"])
    bg = await client.responses.create(model="gpt-5.5", input="bg [mock words=9]", background=True)
    cancelled = await client.responses.cancel(bg.id)
    assert cancelled.status == "cancelled"
    [rec] = await gw.usage(s["account_id"])
    assert rec["status"] == "cancelled" and rec["cost_usd"] == "0.00"
    assert await gw.balance(s["account_id"]) == "10.00"
    assert await gw.verify() == []


async def test_background_is_billed_by_the_poller_without_any_retrieve(gw, upstream, monkeypatch):
    monkeypatch.setattr(flow, "POLL_FIRST_S", 0.2)
    s = await gw.setup(upstream)
    raw = await gw.client(s["key"]).responses.with_raw_response.create(
        model="gpt-5.5", input="bg [mock words=4 prompt_tokens=50]", background=True)
    rec = await settled(gw, s["account_id"], raw.headers["x-request-id"])
    assert rec["status"] == "ok" and rec["cost_usd"] == format_usd(cost(50, 4))
    gets = [p for p in await paths(upstream) if p == f"/v1/responses/{raw.parse().id}"]
    assert len(gets) == 2  # queued -> in_progress -> completed: two polls, then it stopped
    assert await gw.verify() == []


async def test_background_hold_nobody_sees_finish_is_released_by_the_sweeper(upstream, sqlite_url, monkeypatch):
    monkeypatch.setattr(flow, "POLL_FIRST_S", 60.0)
    g = await Gateway(gateway_settings(sqlite_url, max_request_seconds=1)).start()
    try:
        s = await g.setup(upstream)
        raw = await g.client(s["key"]).responses.with_raw_response.create(
            model="gpt-5.5", input="bg [mock words=4]", background=True)
        from reapi.billing.ledger import now_ms
        n = await g.gw.writer.sweep(now_ms() + 1)  # what the sweeper does once the age limit has passed
        assert n == 1
        [rec] = await g.usage(s["account_id"])
        assert rec["request_id"] == raw.headers["x-request-id"] and rec["status"] == "expired"
        assert await g.balance(s["account_id"]) == "10.00"
        # a retrieve that sees it finish later finds the hold closed: nothing is charged
        client = g.client(s["key"])
        await client.responses.retrieve(raw.parse().id)
        assert (await client.responses.retrieve(raw.parse().id)).status == "completed"
        assert (await g.usage(s["account_id"]))[0]["status"] == "expired"
        assert await g.verify() == []
    finally:
        await g.stop()


async def test_a_background_response_cannot_be_deleted_unbilled(gw, upstream, monkeypatch):
    monkeypatch.setattr(flow, "POLL_FIRST_S", 60.0)
    s = await gw.setup(upstream)
    client = gw.client(s["key"])
    bg = await client.responses.create(model="gpt-5.5", input="bg [mock words=3 prompt_tokens=20]", background=True)
    with pytest.raises(openai.BadRequestError):  # still queued upstream (this look moves it to in_progress)
        await client.responses.delete(bg.id)
    assert (await gw.usage(s["account_id"]))[0]["status"] == "pending"
    await client.responses.delete(bg.id)  # finished now: billed first, then deleted
    [rec] = await gw.usage(s["account_id"])
    assert rec["status"] == "ok" and rec["cost_usd"] == format_usd(cost(20, 3))
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve(bg.id)
    assert await gw.verify() == []
