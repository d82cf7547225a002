"""reapi.reports on real SQLite and PostgreSQL stores: real calls through the openai SDK show up in
the usage page, the CSV, the daily series and the spend totals with the costs the ledger charged;
keyset pages walk every row exactly once (ties on the time included) under every filter; the
statement's running balances end at the wallets' balances, with 10,000 usage rows too (their speed
is bench/money.py's to measure)."""
from __future__ import annotations

import asyncio
import csv
import io
import time

import pytest
from sqlalchemy import insert, text

from reapi import reports
from reapi.billing.money import format_usd
from reapi.reports import DAY_MS, UsageFilter
from reapi.store import queries, schema
from reapi.store.db import create_engine, migrate
from tests.harness import Gateway, gateway_settings

NOW = 1_780_000_000_000  # a fixed "now" (ms) for the synthetic rows


@pytest.fixture
async def engine(store_url):
    await asyncio.to_thread(migrate, store_url)
    eng = create_engine(store_url)
    yield eng
    await eng.dispose()


async def seed(engine, n: int, *, models=("gpt-5.5", "claude-x"), ties: int = 3) -> dict:
    """An account with two keys and `n` usage rows over the last 40 days (every `ties` rows share a
    time), plus a credit and three ledger entries per row, balances to match."""
    async with engine.begin() as conn:
        acc = (await queries.create_account(conn, "big"))["id"]
        other = (await queries.create_account(conn, "other"))["id"]
        k1, _ = await queries.create_key(conn, acc, {"name": "=cmd|' /C calc'!A0"})
        k2, _ = await queries.create_key(conn, acc, {"name": "ci, \"nightly\""})
        rows, entries = [], [{"account_id": acc, "kind": "credit", "amount_nano": 10**15, "request_id": None,
                              "note": "seed", "created_at": NOW - 41 * DAY_MS, "wallet": "chat"}]
        for i in range(n):
            ts = NOW - (i // ties) * (40 * DAY_MS // max(1, n // ties))
            cost = 1000 + i
            rows.append({"request_id": f"req_{i:06d}", "account_id": acc, "key_id": (k1, k2)[i % 2],
                         "model": models[i % len(models)], "group": "default", "channel_id": 1, "stream": False,
                         "status": "ok" if i % 10 else "failed", "prompt_tokens": i, "completion_tokens": 2 * i,
                         "cached_tokens": i % 7, "cache_write_tokens": 0, "hold_nano": cost,
                         "cost_nano": cost if i % 10 else 0, "uncollected_nano": 0, "error_code": None,
                         "created_at": ts, "settled_at": ts})
            entries += [{"account_id": acc, "kind": k, "amount_nano": a, "request_id": f"req_{i:06d}", "note": None,
                         "created_at": ts, "wallet": "chat"}
                        for k, a in (("hold", -cost), ("release", cost), ("charge", -(cost if i % 10 else 0)))]
        rows.append({**rows[0], "request_id": "req_other", "account_id": other, "key_id": 999})
        for chunk in range(0, len(rows), 2000):
            await conn.execute(insert(schema.usage), rows[chunk:chunk + 2000])
        for chunk in range(0, len(entries), 5000):
            await conn.execute(insert(schema.ledger), entries[chunk:chunk + 5000])
        total = sum(e["amount_nano"] for e in entries)
        await conn.execute(text(f"UPDATE wallets SET balance_nano = {total} WHERE account_id = {acc} "
                                "AND wallet = 'chat'"))
    return {"account_id": acc, "keys": (k1, k2), "rows": rows[:-1], "balance": total}


def expected(rows, f: UsageFilter) -> list[str]:
    keep = [r for r in rows if (f.model is None or r["model"] == f.model)
            and (f.key_id is None or r["key_id"] == f.key_id)
            and (f.since_ms is None or r["created_at"] >= f.since_ms)
            and (f.until_ms is None or r["created_at"] < f.until_ms)]
    return [r["request_id"] for r in sorted(keep, key=lambda r: (r["created_at"], r["request_id"]), reverse=True)]


async def walk(engine, acc, f, limit) -> list[str]:
    seen, cursor = [], None
    while True:
        async with engine.connect() as conn:
            page = await reports.usage_page(conn, acc, f, limit=limit, before=cursor)
        seen += [r["request_id"] for r in page.rows]
        assert len(page.rows) <= limit
        if page.next_cursor is None:
            return seen
        cursor = page.next_cursor


async def test_pages_filters_csv_series_and_statement(engine):
    s = await seed(engine, 250)
    acc, (k1, k2) = s["account_id"], s["keys"]
    filters = [UsageFilter(), UsageFilter(model="claude-x"), UsageFilter(key_id=k2),
               UsageFilter(since_ms=NOW - 10 * DAY_MS, until_ms=NOW - 2 * DAY_MS),
               UsageFilter(model="gpt-5.5", key_id=k1, since_ms=NOW - 20 * DAY_MS), UsageFilter(model="none")]
    for f in filters:
        want = expected(s["rows"], f)
        assert await walk(engine, acc, f, 7) == want, f
        assert await walk(engine, acc, f, 500) == want
        body = b"".join([chunk async for chunk in reports.usage_csv(engine, acc, f)]).decode()
        lines = list(csv.reader(io.StringIO(body)))
        assert lines[0] == list(reports.CSV_HEADER) and [r[1] for r in lines[1:]] == want
    async with engine.connect() as conn:
        first = await reports.usage_page(conn, acc, limit=3)
        assert (await reports.usage_page(conn, acc, limit=3, before="garbage")).rows == first.rows
    r0 = first.rows[0]
    assert (r0["request_id"], r0["key_name"], r0["cost_nano"]) == ("req_000002", "=cmd|' /C calc'!A0", 1002)
    # the CSV: money as decimal strings, formulas defused, commas and quotes quoted
    body = b"".join([c async for c in reports.usage_csv(engine, acc)]).decode()
    rows = {r[1]: r for r in csv.reader(io.StringIO(body))}
    assert rows["req_000003"][9] == "0.000001003" and rows["req_000000"][9] == "0.00"
    assert rows["req_000002"][2] == "'=cmd|' /C calc'!A0" and rows["req_000001"][2] == 'ci, "nightly"'
    assert rows["req_000001"][0].endswith("Z") and rows["req_000001"][5] == "ok"
    assert sum(1 for _ in rows) == 251  # the other account's row is not there

    async with engine.connect() as conn:
        days = await reports.daily_series(conn, acc, 30, NOW)
        by_model = await reports.daily_spend_by_model(conn, acc, 30, NOW)
        summary = await reports.spend_summary(conn, acc, NOW)
        used = await reports.models_used(conn, acc, 0)
    window = [r for r in s["rows"] if r["created_at"] >= (NOW // DAY_MS - 29) * DAY_MS]
    assert len(days) == 30 and days[-1].day == NOW // DAY_MS and days[-1].label == reports.day_label(NOW // DAY_MS)
    assert sum(d.requests for d in days) == len(window)
    assert sum(d.spend_nano for d in days) == sum(r["cost_nano"] for r in window) == summary["last_30_days_nano"]
    assert sum(sum(v) for v in by_model["models"].values()) == summary["last_30_days_nano"]
    assert set(by_model["models"]) == {"gpt-5.5", "claude-x"} and len(by_model["labels"]) == 30
    today = [r for r in s["rows"] if r["created_at"] // DAY_MS == NOW // DAY_MS]
    assert summary["today_nano"] == sum(r["cost_nano"] for r in today)
    assert summary["requests_24h"] == len([r for r in s["rows"] if r["created_at"] >= NOW - DAY_MS])
    assert used == ["claude-x", "gpt-5.5"]

    # the statement: running balances from now back to the first credit
    seen, before, last = [], None, None
    while True:
        st = await reports.statement(engine, acc, limit=97, before_id=before)
        for r in st.rows:
            if last is not None:
                assert r["balance_after_nano"] == last["balance_after_nano"] - last["amount_nano"]
            last = r
        seen += st.rows
        if st.next_before_id is None:
            break
        before = st.next_before_id
    assert seen[0]["balance_after_nano"] == s["balance"] == st.balances["chat"]
    assert seen[-1]["kind"] == "credit" and seen[-1]["balance_after_nano"] == 10**15
    assert len(seen) == 751
    tasks = await reports.statement(engine, acc, wallet="tasks")
    assert tasks.rows == [] and tasks.balances == {"chat": s["balance"], "tasks": 0}


async def test_ten_thousand_rows_page_by_page(engine):
    """10,000 rows: every page of the keyset walk is right, 5,000 rows deep included (the reads'
    speed is measured by bench/money.py, not asserted here)."""
    s = await seed(engine, 10_000)
    acc, (_, k2) = s["account_id"], s["keys"]
    for f in (UsageFilter(), UsageFilter(model="claude-x", key_id=k2), UsageFilter(since_ms=NOW - 7 * DAY_MS)):
        assert await walk(engine, acc, f, 50) == expected(s["rows"], f)
    async with engine.connect() as conn:
        summary = await reports.spend_summary(conn, acc, NOW)
        days = await reports.daily_series(conn, acc, 30, NOW)
    assert summary["last_30_days_nano"] == sum(d.spend_nano for d in days)
    st = await reports.statement(engine, acc, limit=100)
    assert st.rows[0]["balance_after_nano"] == s["balance"] and len(st.rows) == 100


async def test_a_real_call_shows_up_everywhere(sqlite_url, upstream):
    gw = await Gateway(gateway_settings(sqlite_url)).start()
    try:
        s = await gw.setup(upstream)
        client = gw.client(s["key"])
        ids = []
        for i in range(3):
            raw = await client.chat.completions.with_raw_response.create(
                model="gpt-5.5", messages=[{"role": "user", "content": f"hello {i}"}], max_tokens=50)
            ids.append(raw.headers["x-request-id"])
        admin_rows = {r["request_id"]: r for r in await gw.usage(s["account_id"])}
        engine = gw.gw.engine
        async with engine.connect() as conn:
            page = await reports.usage_page(conn, s["account_id"])
            summary = await reports.spend_summary(conn, s["account_id"], int(time.time() * 1000))
            days = await reports.daily_series(conn, s["account_id"], 7, int(time.time() * 1000))
        assert [r["request_id"] for r in page.rows] == ids[::-1]
        for r in page.rows:
            a = admin_rows[r["request_id"]]
            assert (format_usd(r["cost_nano"]), r["prompt_tokens"], r["completion_tokens"], r["key_name"]) == (
                a["cost_usd"], a["prompt_tokens"], a["completion_tokens"], "k")
            assert r["cost_nano"] > 0 and r["status"] == "ok"
        spent = sum(r["cost_nano"] for r in page.rows)
        assert summary["today_nano"] == spent and summary["requests_24h"] == 3
        assert days[-1].requests == 3 and days[-1].spend_nano == spent
        body = b"".join([c async for c in reports.usage_csv(engine, s["account_id"])]).decode()
        assert [line.split(",")[1] for line in body.splitlines()[1:]] == ids[::-1]
        st = await reports.statement(engine, s["account_id"])
        assert st.rows[0]["balance_after_nano"] == st.balances["chat"] == 10 * 10**9 - spent
        assert st.rows[-1]["kind"] == "credit" and st.rows[-1]["balance_after_nano"] == 10 * 10**9
        assert await gw.verify() == []
    finally:
        await gw.stop()
