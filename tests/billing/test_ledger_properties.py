"""Property test: random concurrent interleavings of holds, settlements, failures,
disconnects, overruns and credits keep the books exact on a real SQLite store."""
import asyncio
import itertools

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from reapi.billing.ledger import Credit, HoldRequest, Release, Settlement, verify
from reapi.billing.ledger import run as ledger_run
from reapi.billing.writer import BillingWriter
from reapi.store import queries
from reapi.store.db import create_engine, migrate

ids = itertools.count()

op = st.one_of(
    st.tuples(st.just("call"), st.integers(1, 5_000), st.sampled_from(["ok", "fail", "disconnect", "overrun"]),
              st.integers(0, 100)),
    st.tuples(st.just("credit"), st.integers(1, 20_000), st.just(""), st.just(0)),
)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('prop')}/p.db"
    migrate(url)
    return url


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=1, max_size=40), start=st.integers(0, 30_000))
def test_invariants(db_url, ops, start):
    asyncio.run(run(db_url, ops, start))


async def run(url, ops, start):
    engine = create_engine(url)
    writer = BillingWriter(engine, max_batch=8)
    writer.start()
    try:
        async with engine.begin() as conn:
            acc = (await queries.create_account(conn, "p"))["id"]
            if start:
                await ledger_run(conn, Credit(acc, start, "start"))
        credits = start
        charged_total = 0

        async def call(worst, outcome, pct):
            nonlocal charged_total
            rid = f"r{next(ids)}"
            req = HoldRequest(rid, acc, 1, None, "m", "default", 1, True, worst,
                              resize=lambda avail: avail if avail >= 10 else None)
            res = await writer.submit(req)
            if not res.ok:
                return
            assert res.balance_after >= 0
            await asyncio.sleep(0)
            if outcome == "fail":
                await writer.submit(Release(rid, acc, 1, False, res.amount))
                return
            cost = res.amount * pct // 100 if outcome != "overrun" else res.amount + 1_000
            s = Settlement(rid, acc, 1, False, res.amount, cost, 1, 1,
                           status="client_closed" if outcome == "disconnect" else "ok")
            got = await writer.submit(s)
            charged_total += got

        async def add(amount):
            nonlocal credits
            await writer.submit(Credit(acc, amount, None))
            credits += amount

        await asyncio.gather(*(call(a, o, p) if kind == "call" else add(a) for kind, a, o, p in ops))
        async with engine.connect() as conn:
            assert await verify(conn) == []
            balance = (await queries.balances(conn, acc))["chat"]
        assert balance >= 0
        assert balance == credits - charged_total
    finally:
        await writer.stop()
        await engine.dispose()
