"""The money path cannot fail on values: whatever a call reports (token counts past any column,
costs past BIGINT, error codes that are numbers, lists or too long), its hold is closed, and a
close the store refuses still ends with the hold released. Real SQLite and PostgreSQL."""
import asyncio
import itertools
import time

import asyncpg
import pytest

from reapi.billing.ledger import BIGINT_MAX, INT_MAX, Credit, HoldRequest, Release, Settlement, verify
from reapi.billing.ledger import run as ledger_run
from reapi.billing.writer import BillingWriter, MoneyNotClosed
from reapi.store import queries
from reapi.store.db import create_engine, migrate, sqlite_path

ids = itertools.count()
BALANCE = 10**12  # 1000 USD


class Books:
    """A migrated store with one funded account and a running writer."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self.writer = BillingWriter(self.engine, max_batch=16)
        self.account = 0

    async def start(self) -> "Books":
        await asyncio.to_thread(migrate, self.url)
        async with self.engine.begin() as conn:
            self.account = (await queries.create_account(conn, "v"))["id"]
            await ledger_run(conn, Credit(self.account, BALANCE, "start"))
        self.writer.start()
        return self

    async def stop(self) -> None:
        await self.writer.stop()
        await self.engine.dispose()

    async def hold(self, amount: int, prefix: str = "r") -> str:
        rid = f"{prefix}{next(ids)}"
        res = await self.writer.submit(HoldRequest(rid, self.account, 1, None, "m", "default", 1, True, amount,
                                                   resize=lambda avail: None))
        assert res.ok and res.amount == amount
        return rid

    def settlement(self, rid: str, hold: int, cost: int, p=1, c=1, ca=0, cw=0) -> Settlement:
        return Settlement(rid, self.account, 1, False, hold, cost, p, c, ca, cw)

    async def row(self, rid: str) -> dict:
        async with self.engine.connect() as conn:
            r = (await conn.exec_driver_sql(
                "SELECT status, prompt_tokens, completion_tokens, cached_tokens, cache_write_tokens, cost_nano, "
                "uncollected_nano, error_code FROM usage WHERE request_id = " + self.q, (rid,))).one()
        return dict(r._mapping)

    @property
    def q(self) -> str:
        return "$1" if self.engine.dialect.name == "postgresql" else "?"

    async def balance(self) -> int:
        async with self.engine.connect() as conn:
            return (await queries.balances(conn, self.account))["chat"]

    async def verify(self) -> list[str]:
        async with self.engine.connect() as conn:
            return await verify(conn)

    async def sql(self, *statements: str) -> None:
        """Run statements on a connection of their own (the store itself, as a DBA would)."""
        if self.engine.dialect.name == "postgresql":
            conn = await asyncpg.connect(self.url)
            try:
                for s in statements:
                    await conn.execute(s)
            finally:
                await conn.close()
        else:
            import sqlite3

            conn = sqlite3.connect(sqlite_path(self.url), isolation_level=None, timeout=30)
            try:
                for s in statements:
                    conn.execute(s)
            finally:
                conn.close()


@pytest.fixture
async def books(store_url):
    b = await Books(store_url).start()
    yield b
    await b.stop()


async def test_token_counts_and_costs_beyond_every_column_still_settle(books):
    hold = 1_000_000
    huge = await books.hold(hold)
    negative = await books.hold(hold)
    big = await books.hold(hold)
    charged = await asyncio.gather(
        # counts past INTEGER (PostgreSQL) and past 64 bits (SQLite), a cost past BIGINT
        books.writer.submit(books.settlement(huge, hold, 2**80, p=2**31, c=2**63 + 5, ca=2**70, cw=-7)),
        # a negative cost or count must not credit the account
        books.writer.submit(books.settlement(negative, hold, -5 * 10**9, p=-1, c=3)),
        # a cost past what is held and what is left: collected as far as the balance allows
        books.writer.submit(books.settlement(big, hold, BIGINT_MAX, p=10, c=10)))
    assert charged[1] == 0
    assert sum(charged) == BALANCE  # everything the account had, not a nano-USD more
    assert await books.balance() == 0
    r = await books.row(huge)
    assert r["status"] == "ok"
    assert (r["prompt_tokens"], r["completion_tokens"], r["cached_tokens"], r["cache_write_tokens"]) == (
        INT_MAX, INT_MAX, INT_MAX, 0)
    assert r["uncollected_nano"] == BIGINT_MAX and r["cost_nano"] == charged[0]
    r = await books.row(negative)
    assert (r["status"], r["cost_nano"], r["uncollected_nano"], r["prompt_tokens"]) == ("ok", 0, 0, 0)
    r = await books.row(big)
    assert r["cost_nano"] + r["uncollected_nano"] == BIGINT_MAX
    assert await books.verify() == []


@pytest.mark.parametrize("code, stored", [
    (500, "upstream_error"), (["rate_limit"], "upstream_error"), ({"a": 1}, "upstream_error"),
    ("x" * 65, "x" * 64), ("Bad Code\n", "upstream_error"), ("context_length_exceeded", "context_length_exceeded"),
    ("ok\n", "upstream_error"),
], ids=["int", "list", "dict", "too-long", "spaces", "valid", "newline"])
async def test_any_error_code_releases_the_hold(books, code, stored):
    rid = await books.hold(5_000)
    other = await books.hold(7_000)
    done = await asyncio.gather(books.writer.submit(Release(rid, books.account, 1, False, 5_000, error_code=code)),
                                books.writer.submit(Release(other, books.account, 1, False, 7_000)))
    assert done == [True, True]
    r = await books.row(rid)
    assert (r["status"], r["error_code"], r["cost_nano"]) == ("failed", stored, 0)
    assert await books.balance() == BALANCE
    assert await books.verify() == []


def refuse_updates(books: Books, prefix: str, *, only_settling: bool, while_flagged: bool = False) -> list[str]:
    """A trigger refusing updates of usage rows whose request id starts with `prefix`: a store
    that fails a close for reasons of its own (a constraint, a full disk, an operator)."""
    cond = f"NEW.request_id LIKE '{prefix}%'"
    if only_settling:
        cond += " AND NEW.status = 'ok'"
    if while_flagged:
        cond += " AND EXISTS (SELECT 1 FROM refuse)"
    if books.engine.dialect.name == "postgresql":
        return ["CREATE TABLE IF NOT EXISTS refuse (x int)",
                f"CREATE FUNCTION refuse_{prefix}() RETURNS trigger AS $$ BEGIN IF {cond} THEN "
                f"RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql",
                f"CREATE TRIGGER refuse_{prefix} BEFORE UPDATE ON usage FOR EACH ROW "
                f"EXECUTE FUNCTION refuse_{prefix}()"]
    return ["CREATE TABLE IF NOT EXISTS refuse (x int)",
            f"CREATE TRIGGER refuse_{prefix} BEFORE UPDATE ON usage WHEN {cond} BEGIN SELECT RAISE(ABORT, 'refused'); "
            "END"]


async def test_a_settlement_the_store_refuses_releases_the_hold_instead(books):
    await books.sql(*refuse_updates(books, "bad", only_settling=True))
    good, bad = await books.hold(1_000, "good"), await books.hold(2_000, "bad")
    # in one batch: the batch fails, each is retried alone, the bad one falls back to a release
    charged = await asyncio.gather(books.writer.submit(books.settlement(good, 1_000, 600)),
                                   books.writer.submit(books.settlement(bad, 2_000, 900)))
    assert charged == [600, 0]
    r = await books.row(bad)
    assert (r["status"], r["error_code"], r["cost_nano"]) == ("failed", "settlement_failed", 0)
    assert (await books.row(good))["status"] == "ok"
    assert await books.balance() == BALANCE - 600
    assert await books.verify() == []


async def test_a_release_the_store_refuses_for_a_while_is_retried(books):
    await books.sql(*refuse_updates(books, "flaky", only_settling=False, while_flagged=True),
                    "INSERT INTO refuse VALUES (1)")
    rid = await books.hold(3_000, "flaky")
    started = time.monotonic()
    closing = asyncio.ensure_future(books.writer.submit(Release(rid, books.account, 1, False, 3_000,
                                                                error_code="upstream_timeout")))
    await asyncio.sleep(0.5)
    assert not closing.done()  # still being retried
    await books.sql("DELETE FROM refuse")
    assert await asyncio.wait_for(closing, 10) is True
    assert time.monotonic() - started >= 0.5
    assert (await books.row(rid))["status"] == "failed"
    assert await books.balance() == BALANCE
    assert await books.verify() == []


async def test_a_close_that_keeps_failing_tells_the_caller_and_is_retried_by_the_sweep(books):
    await books.sql(*refuse_updates(books, "stuck", only_settling=False, while_flagged=True),
                    "INSERT INTO refuse VALUES (1)")
    rid = await books.hold(4_000, "stuck")
    with pytest.raises(MoneyNotClosed):
        await asyncio.wait_for(books.writer.submit(books.settlement(rid, 4_000, 1_000)), 20)
    assert (await books.row(rid))["status"] == "pending"  # the caller knows the money is not closed
    assert await books.writer.sweep(0) == 0  # the store still refuses
    await books.sql("DELETE FROM refuse")
    assert await books.writer.sweep(0) == 1  # the next sweep releases it
    r = await books.row(rid)
    assert (r["status"], r["error_code"], r["cost_nano"]) == ("failed", "settlement_failed", 0)
    assert books.writer.unclosed == {}
    assert await books.balance() == BALANCE
    assert await books.verify() == []
