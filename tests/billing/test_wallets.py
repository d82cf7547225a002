"""Wallets and the generic holds (TaskHold, Capture, ReleaseHold) on real SQLite and PostgreSQL:
one balance per workspace that never crosses over, no overdraw under concurrency, exactly one
close per ref, the chat sweeper leaves generic holds alone, and verify checks every wallet."""
import asyncio
import time

import anthropic
import openai
import pytest

from reapi.billing.ledger import (Capture, Credit, Debit, HoldRequest, ReleaseHold, Settlement, TaskHold, Tx,
                                  run_asyncpg)
from reapi.store import queries
from tests.billing.test_money_values import BALANCE, Books
from tests.harness import create_pg_database, drop_pg_database


@pytest.fixture
async def books(store_url):
    b = await Books(store_url).start()
    yield b
    await b.stop()


async def balances(books: Books) -> dict[str, int]:
    async with books.engine.connect() as conn:
        return await queries.balances(conn, books.account)


async def test_an_account_has_a_chat_and_a_tasks_wallet_that_never_cross(books):
    submit = books.writer.submit
    assert await balances(books) == {"chat": BALANCE, "tasks": 0}
    # the tasks wallet is empty: a task cannot spend the chat balance
    refused = await submit(TaskHold("task_a", books.account, "tasks", 1))
    assert not refused.ok and refused.refusal == "insufficient_balance"
    assert await submit(Credit(books.account, 5_000, "top-up", wallet="tasks", ref="cs_1")) == 5_000
    assert await balances(books) == {"chat": BALANCE, "tasks": 5_000}
    # and a chat call cannot spend the tasks balance: an account funded only in tasks gets no chat hold
    async with books.engine.begin() as conn:
        poor = (await queries.create_account(conn, "tasks only"))["id"]
    assert await submit(Credit(poor, 9_000, wallet="tasks")) == 9_000
    chat = await submit(HoldRequest("c1", poor, 1, None, "m", "default", 1, False, 10, resize=lambda a: None))
    assert not chat.ok and chat.refusal == "insufficient_balance"
    async with books.engine.connect() as conn:
        assert await queries.balances(conn, poor) == {"chat": 0, "tasks": 9_000}
        ledger = await queries.list_ledger(conn, books.account, 10, None)
    top_up = [e for e in ledger if e["note"] == "top-up"]
    assert [(e["wallet"], e["request_id"], e["amount_nano"]) for e in top_up] == [("tasks", "cs_1", 5_000)]
    assert await submit(Credit(books.account, 1, wallet="nope")) is None  # no such wallet
    assert await books.verify() == []


async def test_capture_charges_up_to_the_hold_and_each_ref_closes_once(books):
    submit = books.writer.submit
    await submit(Credit(books.account, 10_000, wallet="tasks"))
    held = await submit(TaskHold("task_1", books.account, "tasks", 4_000))
    assert held.ok and held.amount == 4_000 and held.balance_after == 6_000
    again = await submit(TaskHold("task_1", books.account, "tasks", 1))
    assert not again.ok and again.refusal == "duplicate_ref"
    assert await submit(Capture("task_1", 1_500)) == 1_500
    assert await submit(Capture("task_1", 1_500)) is None  # closed: nothing moves twice
    assert await submit(ReleaseHold("task_1")) is False
    assert (await submit(TaskHold("task_1", books.account, "tasks", 1))).refusal == "duplicate_ref"
    # more than held: only the hold is charged; less than nothing: nothing
    assert (await submit(TaskHold("task_2", books.account, "tasks", 2_000))).ok
    assert await submit(Capture("task_2", 10**30)) == 2_000
    assert (await submit(TaskHold("task_3", books.account, "tasks", 700))).ok
    assert await submit(Capture("task_3", -5)) == 0
    assert (await submit(TaskHold("task_4", books.account, "tasks", 900))).ok
    assert await submit(ReleaseHold("task_4")) is True
    assert await submit(Capture("task_4", 10)) is None
    assert await submit(Capture("never", 10)) is None and await submit(ReleaseHold("never")) is False
    bad = await submit(TaskHold("task_5", books.account, "tasks", -1))
    assert not bad.ok and bad.refusal == "invalid_amount"
    assert (await submit(TaskHold("task_6", books.account, "nope", 1))).refusal == "no_account"
    assert await balances(books) == {"chat": BALANCE, "tasks": 10_000 - 1_500 - 2_000}
    async with books.engine.connect() as conn:
        rows = (await conn.exec_driver_sql(
            "SELECT ref, wallet, amount_nano, captured_nano, status, closed_at IS NOT NULL FROM holds "
            "ORDER BY ref")).all()
    assert [tuple(r) for r in rows] == [
        ("task_1", "tasks", 4_000, 1_500, "captured", True), ("task_2", "tasks", 2_000, 2_000, "captured", True),
        ("task_3", "tasks", 700, 0, "captured", True), ("task_4", "tasks", 900, 0, "released", True)]
    assert await books.verify() == []


async def test_concurrent_task_holds_never_overdraw_and_closes_race_to_one(books):
    submit = books.writer.submit
    await submit(Credit(books.account, 10_000, wallet="tasks"))
    results = await asyncio.gather(*(submit(TaskHold(f"t{i}", books.account, "tasks", 300)) for i in range(50)))
    assert sum(r.ok for r in results) == 33  # 33 * 300 = 9,900 of 10,000
    assert all(r.refusal == "insufficient_balance" for r in results if not r.ok)
    assert (await balances(books))["tasks"] == 100
    # every held ref closed by a capture and a release racing each other: one wins
    held = [f"t{i}" for i, r in enumerate(results) if r.ok]
    closes = await asyncio.gather(*(op for ref in held for op in (submit(Capture(ref, 100)), submit(ReleaseHold(ref)))))
    captured = [c for c in closes[0::2] if c is not None]
    released = closes[1::2]
    assert all((c is not None) != r for c, r in zip(closes[0::2], released))
    assert (await balances(books))["tasks"] == 10_000 - 100 * len(captured)
    assert await books.verify() == []


async def test_debits_race_holds_and_never_overdraw(books):
    """An operator's Debit is decided on the locked balance in the batch, like a hold: concurrent
    debits and task holds of one wallet never take it below zero; each debit is one `adjustment`."""
    submit = books.writer.submit
    await submit(Credit(books.account, 10_000, wallet="tasks"))
    ops = [Debit(books.account, 700, "correction", wallet="tasks") if i % 2 else
           TaskHold(f"d{i}", books.account, "tasks", 700) for i in range(30)]
    results = await asyncio.gather(*(submit(op) for op in ops))
    assert sum(r.ok for r in results) == 14  # 14 * 700 = 9,800 of 10,000
    assert all(r.refusal == "insufficient_balance" and r.balance_after < 700 for r in results if not r.ok)
    assert (await balances(books))["tasks"] == 200
    for bad in (Debit(books.account, 201, wallet="tasks"), Debit(books.account, 0, wallet="tasks"),
                Debit(books.account, -5, wallet="tasks"), Debit(books.account, 1, wallet="nope")):
        r = await submit(bad)
        assert not r.ok and r.refusal in ("insufficient_balance", "invalid_amount", "no_account"), bad
    whole = await submit(Debit(books.account, 200, "all of it", wallet="tasks"))
    assert whole.ok and whole.balance_after == 0
    async with books.engine.connect() as conn:
        entries = [e for e in await queries.list_ledger(conn, books.account, 100, None) if e["kind"] == "adjustment"]
    debits = sum(1 for op, r in zip(ops, results) if type(op) is Debit and r.ok)
    assert len(entries) == debits + 1 and all(e["amount_nano"] in (-700, -200) and e["wallet"] == "tasks"
                                              and e["request_id"] is None for e in entries)
    assert await books.verify() == []


async def test_the_chat_sweeper_never_touches_generic_holds(books):
    submit = books.writer.submit
    await submit(Credit(books.account, 1_000, wallet="chat"))
    await submit(Credit(books.account, 1_000, wallet="tasks"))
    assert (await submit(TaskHold("task_old", books.account, "tasks", 600))).ok
    assert (await submit(TaskHold("task_chat", books.account, "chat", 400))).ok  # a generic hold on chat money
    chat = await books.hold(250)
    await books.sql("UPDATE holds SET created_at = 1")  # as old as it gets
    assert await books.writer.sweep(age_cutoff_ms=int(time.time() * 1000) + 60_000) == 1  # the chat call only
    assert (await books.row(chat))["status"] == "expired"
    assert await submit(Capture("task_old", 100)) == 100
    assert await submit(ReleaseHold("task_chat")) is True
    assert await balances(books) == {"chat": BALANCE + 1_000, "tasks": 900}
    assert await books.verify() == []


async def test_verify_checks_every_wallet_and_every_generic_hold(books):
    submit = books.writer.submit
    await submit(Credit(books.account, 10_000, wallet="tasks"))
    for ref in ("task_a", "task_b", "task_c"):
        assert (await submit(TaskHold(ref, books.account, "tasks", 1_000))).ok
    assert await submit(Capture("task_a", 400)) == 400
    chat = await books.hold(500)
    assert await books.verify() == []
    a = books.account
    await books.sql(
        f"UPDATE wallets SET balance_nano = balance_nano + 7 WHERE account_id = {a} AND wallet = 'tasks'",
        "UPDATE holds SET captured_nano = 300 WHERE ref = 'task_a'",  # its charge entry says 400
        "UPDATE holds SET status = 'released', closed_at = 1 WHERE ref = 'task_b'",  # no release entry
        f"UPDATE ledger SET wallet = 'tasks' WHERE request_id = '{chat}'",  # a chat hold spent tasks money
        "INSERT INTO ledger (account_id, kind, amount_nano, request_id, created_at, wallet) "
        f"VALUES ({a}, 'credit', 5, 'cs_9', 0, 'gift'), ({a}, 'hold', -5, 'task_ghost', 0, 'tasks')",
    )
    text = "\n".join(await books.verify())
    assert f"account {a} wallet tasks: balance" in text and "!= ledger sum" in text
    assert "hold task_a (captured): cost 300 != ledger 400" in text
    assert "hold task_a (captured): charge entries of -400 for a cost of 300" in text
    assert "hold task_b (released): 0 release entries of 0 for a hold of 1000 (closed)" in text
    assert f"usage {chat} (pending): entries in account {a} wallet tasks, not its account {a} wallet chat" in text
    assert f"account {a} wallet gift: ledger entries summing to 5 without a wallet" in text
    assert "ledger entries for request task_ghost without a usage record or hold" in text
    assert "cs_9" not in text  # a credit with a ref needs no hold record
    assert "task_c" not in text


@pytest.fixture
async def pg_url():
    url = await create_pg_database()
    yield url
    await drop_pg_database(url)


async def test_a_chat_batch_is_still_a_lock_and_one_write(pg_url):
    """PostgreSQL (the asyncpg path): a batch of chat holds is 1 lock + 1 write statement, a batch of
    settlements 2 locks (wallets, usage rows) + 1 write, as before wallets; generic closes add one read."""
    store_url = pg_url
    import asyncpg

    b = await Books(store_url).start()
    conn = await asyncpg.connect(store_url)
    try:
        counted = Counting(conn)
        holds = [HoldRequest(f"s{i}", b.account, 1, None, "m", "default", 1, True, 100, resize=lambda a: None)
                 for i in range(64)]
        async with conn.transaction():
            assert all(r.ok for r in await run_asyncpg(counted, holds, "i"))
        assert counted.calls == ["fetch", "execute"]
        counted.calls.clear()
        async with conn.transaction():
            assert await run_asyncpg(counted, [Settlement(h.request_id, b.account, 1, False, 100, 60, 1, 1)
                                               for h in holds], "i") == [60] * 64
        assert counted.calls == ["fetch", "fetch", "execute"]
        counted.calls.clear()
        async with conn.transaction():
            await run_asyncpg(counted, [Credit(b.account, 1_000, wallet="tasks"),
                                        TaskHold("task_x", b.account, "tasks", 10)], "i")
        async with conn.transaction():
            counted.calls.clear()
            assert await run_asyncpg(counted, [Capture("task_x", 4)], "i") == [4]
        assert counted.calls == ["fetch", "fetch", "fetch", "execute"]  # hold record, wallets, hold lock
        assert await b.verify() == []
        assert len(Tx(True).locks(holds)) == 1
    finally:
        await conn.close()
        await b.stop()


class Counting:
    """An asyncpg connection that records which calls a batch makes."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.calls: list[str] = []

    async def fetch(self, *a):
        self.calls.append("fetch")
        return await self.conn.fetch(*a)

    async def execute(self, *a):
        self.calls.append("execute")
        return await self.conn.execute(*a)


async def test_v1_refuses_a_tasks_key_like_an_unknown_key(gateway, upstream):
    s = await gateway.setup(upstream)
    tasks = await gateway.admin("POST", f"/admin/accounts/{s['account_id']}/keys",
                                {"name": "t", "workspace": "tasks"}, expect=201)
    await gateway.admin("POST", f"/admin/accounts/{s['account_id']}/credits",
                        {"amount_usd": "5.00", "wallet": "tasks"}, expect=201)
    assert tasks["key"].startswith("rk_live_")
    body = dict(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    answers = []
    for key in (tasks["key"], "sk-" + "x" * 48):  # the tasks key, and a key nobody issued
        with pytest.raises(openai.AuthenticationError) as err:
            await gateway.client(key).chat.completions.create(**body)
        answers.append((err.value.status_code, err.value.body))
        claude = anthropic.AsyncAnthropic(base_url=gateway.url, api_key=key, max_retries=0)
        try:
            with pytest.raises(anthropic.AuthenticationError):
                await claude.messages.create(model="gpt-5.5", max_tokens=5,
                                             messages=[{"role": "user", "content": "hi"}])
        finally:
            await claude.close()
    assert answers[0] == answers[1] and answers[0][0] == 401 and answers[0][1]["code"] == "invalid_api_key"
    assert [k.id for k in gateway.gw.catalog.snapshot.task_keys.values()] == [tasks["id"]]
    # the chat key still works, and spends chat money only
    resp = await gateway.client(s["key"]).chat.completions.create(**body)
    assert resp.usage.total_tokens > 0
    acc = await gateway.admin("GET", f"/admin/accounts/{s['account_id']}", expect=200)
    assert acc["balances"]["tasks"] == "5.00" and acc["balances"]["chat"] != "10.00"
    assert await gateway.usage(s["account_id"]) and await gateway.verify() == []
