"""`reapi ledger verify` also checks the top-ups against their credits (payments.audit): clean after
real redemptions and a Stripe credit, and it names a second credit under a code's ref, a credit
for an unpaid top-up and a code marked redeemed without its top-up (which the books alone would
accept), on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio

from click.testing import CliRunner
from sqlalchemy import text

from reapi.billing.ledger import Credit
from reapi.billing.ledger import run as ledger_run
from reapi.billing.ledger import verify
from reapi.cli import main
from reapi.operations import codes as code_ops
from reapi.payments.audit import verify_topups
from reapi.store import queries
from reapi.store.db import create_engine, migrate


async def test_top_ups_agree_with_their_credits_and_each_disagreement_is_named(store_url):
    await asyncio.to_thread(migrate, store_url)
    engine = create_engine(store_url)
    try:
        async with engine.begin() as conn:
            acc = (await queries.create_account(conn, "a"))["id"]
            minted = (await code_ops.create_codes(conn, "2.00", 3))["codes"]
            await code_ops.redeem_code(conn, acc, minted[0])
            await conn.execute(text(f"INSERT INTO topups (account_id, wallet, amount_nano, method, status, session_id, "
                                    f"created_at) VALUES ({acc}, 'tasks', 5000000000, 'stripe', 'paid', 'cs_1', 1)"))
            tid = (await conn.execute(text("SELECT id FROM topups WHERE method = 'stripe'"))).scalar()
            await ledger_run(conn, Credit(acc, 5_000_000_000, "Stripe top-up", wallet="tasks", ref=f"topup_{tid}"))
            await conn.execute(text(f"INSERT INTO stripe_events (event_id, session_id, topup_id, type, created_at) "
                                    f"VALUES ('evt_1', 'cs_1', {tid}, 'checkout.session.completed', 1)"))
        async with engine.connect() as conn:
            assert await verify(conn) == [] and await verify_topups(conn) == []
        code_id = (await _scalar(engine, "SELECT code_id FROM topups WHERE method = 'code'"))
        async with engine.begin() as conn:  # what a double-credit bug would leave behind
            await ledger_run(conn, Credit(acc, 2_000_000_000, "again", ref=f"code_{code_id}"))
            await conn.execute(text(f"INSERT INTO topups (account_id, wallet, amount_nano, method, status, created_at) "
                                    f"VALUES ({acc}, 'chat', 1000000000, 'stripe', 'pending', 2)"))
            pending = (await conn.execute(text("SELECT max(id) FROM topups"))).scalar()
            await ledger_run(conn, Credit(acc, 1_000_000_000, "early", ref=f"topup_{pending}"))
            await ledger_run(conn, Credit(acc, 7, "stray", ref="topup_999999"))
            await conn.execute(text("UPDATE redemption_codes SET redeemed_at = 5, redeemed_by = 1 "
                                    "WHERE id = (SELECT max(id) FROM redemption_codes)"))
            await conn.execute(text("UPDATE topups SET status = 'failed' "
                                    "WHERE method = 'stripe' AND session_id = 'cs_1'"))
        async with engine.connect() as conn:
            assert await verify(conn) == []  # the books balance: only the top-ups' check sees these
            problems = await verify_topups(conn)
        assert len(problems) == 6, problems
        for part in (f"code_{code_id}", f"topup_{pending}", "not paid but credited", "topup_999999 without a top-up",
                     "redeemed without a paid top-up", "Stripe event evt_1"):
            assert any(part in p for p in problems), (part, problems)
    finally:
        await engine.dispose()


async def _scalar(engine, sql):
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


def test_the_cli_runs_both_checks(tmp_path):
    runner = CliRunner(env={"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"})
    assert runner.invoke(main, ["migrate"]).exit_code == 0
    assert runner.invoke(main, ["accounts", "create", "acme"]).exit_code == 0
    [code] = runner.invoke(main, ["codes", "create", "--amount", "1"]).stdout.split()
    ok = runner.invoke(main, ["ledger", "verify"])
    assert ok.exit_code == 0 and "ledger ok" in ok.stdout
    import sqlite3

    db = sqlite3.connect(f"{tmp_path}/cli.db")
    db.execute("INSERT INTO ledger (account_id, kind, amount_nano, request_id, created_at, wallet) "
               "VALUES (1, 'credit', 5, 'code_1', 1, 'chat')")
    db.execute("UPDATE wallets SET balance_nano = 5 WHERE account_id = 1 AND wallet = 'chat'")
    db.commit()
    db.close()
    bad = runner.invoke(main, ["ledger", "verify"])
    assert bad.exit_code == 1 and "code_1 without a top-up" in bad.stdout and code not in bad.stdout
