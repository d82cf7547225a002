"""The money pages' read times with 10,000 usage rows (30,000 ledger entries), SQLite and PostgreSQL.

    .venv/bin/python -m bench.money [--runs 30] [--pg]

1. reapi.reports' reads on a fresh store seeded like tests/test_reports.py (keyset pages, a page
   5,000 rows deep, filtered pages, the daily series + by model + spend totals, a statement page);
2. the pages over real HTTP on a real gateway (tests/harness.py) with a signed-in user owning the
   rows: /console/usage (first, older, filtered), /console/billing, /console/topup, and the full CSV.
Median and p95 in ms. Not part of the test suite (the tests check what the pages show)."""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from reapi import reports
from reapi.reports import DAY_MS, UsageFilter
from reapi.store.db import create_engine, migrate
from tests.console.conftest import WebClient
from tests.harness import Gateway, create_pg_database, drop_pg_database, gateway_settings
from tests.test_reports import NOW, seed


async def timed(fn, runs: int) -> tuple[float, float]:
    await fn()  # warm
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)]


async def floors(url: str, runs: int) -> dict[str, tuple[float, float]]:
    await asyncio.to_thread(migrate, url)
    engine = create_engine(url)
    try:
        s = await seed(engine, 10_000)
        acc, (_, k2) = s["account_id"], s["keys"]
        async with engine.connect() as conn:
            p = await reports.usage_page(conn, acc, limit=50)
            for _ in range(100):
                p = await reports.usage_page(conn, acc, limit=50, before=p.next_cursor)
        deep = p.next_cursor

        async def page(f=UsageFilter(), before=None):
            async with engine.connect() as conn:
                await reports.usage_page(conn, acc, f, limit=50, before=before)

        async def series():
            async with engine.connect() as conn:
                await reports.daily_series(conn, acc, 30, NOW)
                await reports.daily_spend_by_model(conn, acc, 30, NOW)
                await reports.spend_summary(conn, acc, NOW)

        return {"usage_page": await timed(page, runs),
                "usage_page 5,000 rows deep": await timed(lambda: page(before=deep), runs),
                "usage_page model+key": await timed(lambda: page(UsageFilter(model="claude-x", key_id=k2)), runs),
                "usage_page last 7 days": await timed(lambda: page(UsageFilter(since_ms=NOW - 7 * DAY_MS)), runs),
                "series + by model + summary": await timed(series, runs),
                "statement page": await timed(lambda: reports.statement(engine, acc, limit=100), runs)}
    finally:
        await engine.dispose()


async def pages(url: str, runs: int) -> dict[str, tuple[float, float]]:
    from sqlalchemy import insert, text

    from reapi.store import queries, schema

    gw = await Gateway(gateway_settings(url)).start()
    c = WebClient(gw.url)
    try:
        await c.signup("bench@example.com")
        acc = (await gw.admin("GET", "/admin/users"))["data"][0]["account_id"]
        now = int(time.time() * 1000)
        async with gw.gw.engine.begin() as conn:
            key_id, _ = await queries.create_key(conn, acc, {"name": "bulk"})
            rows, entries = [], [{"account_id": acc, "kind": "credit", "amount_nano": 10**10, "request_id": None,
                                  "note": "seed", "created_at": now - 40 * DAY_MS, "wallet": "chat"}]
            for i in range(10_000):
                ts = now - i * 250_000
                rid = f"bench_{i:05d}"
                rows.append({"request_id": rid, "account_id": acc, "key_id": key_id, "model": ("gpt-5.5", "claude-x")[i % 2],
                             "group": "default", "channel_id": 1, "stream": False, "status": "ok", "prompt_tokens": 10,
                             "completion_tokens": 20, "cached_tokens": 0, "cache_write_tokens": 0, "hold_nano": 500,
                             "cost_nano": 300, "uncollected_nano": 0, "error_code": None, "created_at": ts,
                             "settled_at": ts})
                entries += [{"account_id": acc, "kind": k, "amount_nano": a, "request_id": rid, "note": None,
                             "created_at": ts, "wallet": "chat"}
                            for k, a in (("hold", -500), ("release", 500), ("charge", -300))]
            for i in range(0, len(rows), 2000):
                await conn.execute(insert(schema.usage), rows[i:i + 2000])
            for i in range(0, len(entries), 5000):
                await conn.execute(insert(schema.ledger), entries[i:i + 5000])
            await conn.execute(text(f"UPDATE wallets SET balance_nano = {10**10 - 3_000_000} "
                                    f"WHERE account_id = {acc} AND wallet = 'chat'"))
        older = (await c.get("/console/usage?format=json"))[2].split('"next":"', 1)[1].split('"', 1)[0]

        def get(path):
            async def run():
                status, _, _ = await c.get(path)
                assert status == 200, (path, status)
            return run

        out = {name: await timed(get(path), runs) for name, path in (
            ("GET /console/usage", "/console/usage"), ("GET /console/usage (older page)", older),
            ("GET /console/usage?model=&key=", f"/console/usage?model=claude-x&key={key_id}"),
            ("GET /console/billing", "/console/billing"), ("GET /console/topup", "/console/topup"))}
        out["GET /console/usage.csv (10,000 rows)"] = await timed(get("/console/usage.csv"), max(3, runs // 10))
        return out
    finally:
        await c.close()
        await gw.stop()


def show(store: str, results: dict[str, tuple[float, float]]) -> None:
    for name, (med, p95) in results.items():
        print(f"{store:<11} {name:<40} median {med:7.1f} ms   p95 {p95:7.1f} ms")


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--pg", action="store_true", help="also on fresh PostgreSQL databases")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        show("sqlite", await floors(f"sqlite:///{d}/floors.db", args.runs))
        show("sqlite", await pages(f"sqlite:///{d}/pages.db", args.runs))
    if args.pg:
        for fn in (floors, pages):
            url = await create_pg_database()
            try:
                show("postgresql", await fn(url, args.runs))
            finally:
                await drop_pg_database(url)


if __name__ == "__main__":
    asyncio.run(main())
