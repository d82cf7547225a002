"""The money of a task on a real store (SQLite and PostgreSQL): hold at submit, capture on success,
release on failure, each exactly once under a compare-and-set; Idempotency-Key replay and conflict;
200 concurrent submits on a wallet that affords 20 hold exactly 20."""
import asyncio

import pytest
from sqlalchemy import text

from reapi.billing.ledger import verify
from reapi.store.db import create_engine, migrate
from reapi.tasks import lifecycle
from reapi.tasks.errors import TaskError
from reapi.tasks.pricing import cost_nano
from tests.tasks.helpers import funded_key, model_of, tasks_balance

USD = 10**9


@pytest.fixture
async def engine(store_url):
    await asyncio.to_thread(migrate, store_url)
    eng = create_engine(store_url)
    yield eng
    await eng.dispose()


async def entries(engine, ref):
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(
            "SELECT kind, amount_nano, wallet FROM ledger WHERE request_id = :r ORDER BY id"), {"r": ref})).all()]


async def test_hold_capture_release_exact(engine):
    key = await funded_key(engine, "1.00")
    m = model_of("gpt-image-2")
    body = {"prompt": "a cat", "resolution": "2k"}
    cost = cost_nano(m, body)
    assert cost == 50_000_000  # 50 credits = 0.05 USD
    a = await lifecycle.submit(engine, key=key, model=m, body=body, cost_nano=cost)
    b = await lifecycle.submit(engine, key=key, model=m, body=body, cost_nano=cost)
    assert a.task["status"] == "queued" and not a.replayed and a.task["id"] != b.task["id"]
    assert await tasks_balance(engine, key.account_id) == USD - 2 * cost
    assert await lifecycle.finish(engine, a.task["id"], ok=True, outputs={"image_urls": ["x"]})
    assert not await lifecycle.finish(engine, a.task["id"], ok=False, error_code=50003)  # already completed
    assert await lifecycle.finish(engine, b.task["id"], ok=False, error_code=50003, error_message="nope")
    assert not await lifecycle.finish(engine, b.task["id"], ok=True)
    assert await tasks_balance(engine, key.account_id) == USD - cost
    assert await entries(engine, a.task["id"]) == [("hold", -cost, "tasks"), ("release", cost, "tasks"),
                                                   ("charge", -cost, "tasks")]
    assert await entries(engine, b.task["id"]) == [("hold", -cost, "tasks"), ("release", cost, "tasks")]
    async with engine.connect() as conn:
        t = await lifecycle.get_task(conn, b.task["id"])
        assert (t["status"], t["error_code"], t["error_message"]) == ("failed", 50003, "nope")
        assert (await lifecycle.get_task(conn, a.task["id"]))["status"] == "completed"
        assert await verify(conn) == []


async def test_concurrent_finishers_move_money_once(engine):
    key = await funded_key(engine, "1.00")
    m = model_of("mureka-v9-song")
    s = await lifecycle.submit(engine, key=key, model=m, body={"lyrics": "la"}, cost_nano=60_000_000)
    results = await asyncio.gather(*[lifecycle.finish(engine, s.task["id"], ok=i % 2 == 0, error_code=50003)
                                     for i in range(10)])
    assert sum(results) == 1
    async with engine.connect() as conn:
        assert await verify(conn) == []


async def test_insufficient_credits_stores_nothing(engine):
    key = await funded_key(engine, "0.01")
    m = model_of("gpt-image-2")
    with pytest.raises(TaskError) as e:
        await lifecycle.submit(engine, key=key, model=m, body={"prompt": "x"}, cost_nano=30_000_000)
    assert e.value.code == 30001 and e.value.status == 402
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar() == 0
    assert await tasks_balance(engine, key.account_id) == USD // 100


async def test_idempotency_replay_and_conflict(engine):
    key = await funded_key(engine, "1.00")
    m = model_of("gpt-image-2")
    first = await lifecycle.submit(engine, key=key, model=m, body={"prompt": "x"}, cost_nano=30_000_000,
                                   idempotency=("k1", "h1"))
    again = await lifecycle.submit(engine, key=key, model=m, body={"prompt": "x"}, cost_nano=30_000_000,
                                   idempotency=("k1", "h1"))
    assert again.replayed and again.task["id"] == first.task["id"]
    with pytest.raises(TaskError) as e:
        await lifecycle.submit(engine, key=key, model=m, body={"prompt": "y"}, cost_nano=30_000_000,
                               idempotency=("k1", "h2"))
    assert e.value.code == 20004 and e.value.status == 409
    # the same key concurrently: one task, one hold
    same = await asyncio.gather(*[lifecycle.submit(engine, key=key, model=m, body={"prompt": "z"},
                                                   cost_nano=30_000_000, idempotency=("k2", "h3"))
                                  for _ in range(10)])
    assert len({s.task["id"] for s in same}) == 1 and sum(not s.replayed for s in same) == 1
    assert await tasks_balance(engine, key.account_id) == USD - 2 * 30_000_000
    # another account's identical key is its own
    other = await funded_key(engine, "1.00", name="other")
    theirs = await lifecycle.submit(engine, key=other, model=m, body={"prompt": "x"}, cost_nano=30_000_000,
                                    idempotency=("k1", "h1"))
    assert not theirs.replayed and theirs.task["id"] != first.task["id"]


async def test_200_concurrent_submits_on_a_wallet_that_affords_20(engine):
    key = await funded_key(engine, "0.60")  # 20 x 30 credits
    m = model_of("gpt-image-2")

    async def one():
        try:
            await lifecycle.submit(engine, key=key, model=m, body={"prompt": "x"}, cost_nano=30_000_000)
            return True
        except TaskError as e:
            assert e.code == 30001
            return False

    results = await asyncio.gather(*[one() for _ in range(200)])
    assert sum(results) == 20
    assert await tasks_balance(engine, key.account_id) == 0
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar() == 20
        assert (await conn.execute(text("SELECT count(*) FROM holds WHERE status = 'pending'"))).scalar() == 20
        assert await verify(conn) == []
