"""The console dashboard's render time with 10,000 usage rows (SQLite and PostgreSQL).

    .venv/bin/python -m bench.console [--rows 10000] [--runs 50] [--pg]

Starts a real gateway (tests/harness.py) on a fresh store, signs a user up, writes the rows
(spread over 40 days and 7 models) and times GET /console over real HTTP: median and p95 in ms.
Not part of the test suite (the tests check the numbers the page shows, not its speed)."""
from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from tests.console.conftest import WebClient
from tests.console.test_dashboard import seed_usage
from tests.harness import Gateway, create_pg_database, drop_pg_database, gateway_settings


async def measure(url: str, rows: int, runs: int) -> tuple[float, float]:
    gw = await Gateway(gateway_settings(url)).start()
    c = WebClient(gw.url)
    try:
        await c.signup("bench@example.com")
        account_id = (await gw.admin("GET", "/admin/users"))["data"][0]["account_id"]
        await seed_usage(gw, account_id, rows, int(time.time() * 1000))
        await c.get("/console")  # the first render compiles the templates
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            status, _, _ = await c.get("/console")
            times.append((time.perf_counter() - t0) * 1000)
            assert status == 200
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.95) - 1]
    finally:
        await c.close()
        await gw.stop()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--pg", action="store_true", help="also on a fresh PostgreSQL database")
    args = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        med, p95 = await measure(f"sqlite:///{d}/bench.db", args.rows, args.runs)
        print(f"sqlite:     GET /console with {args.rows} usage rows: median {med:.1f} ms, p95 {p95:.1f} ms")
    if args.pg:
        url = await create_pg_database()
        try:
            med, p95 = await measure(url, args.rows, args.runs)
            print(f"postgresql: GET /console with {args.rows} usage rows: median {med:.1f} ms, p95 {p95:.1f} ms")
        finally:
            await drop_pg_database(url)


if __name__ == "__main__":
    asyncio.run(main())
