"""Redemption codes on real SQLite and PostgreSQL stores: minted through the admin API and the CLI
(shown once, stored as sha256 only, listed masked), redeemed once ever (20 accounts racing for one
code get exactly one credit), unknown/used/expired codes refused with their own code and nothing
moved, attempts throttled per account; `ledger verify` clean after all of it."""
from __future__ import annotations

import asyncio
import hashlib
import re

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from reapi.billing.ledger import verify
from reapi.cli import main
from reapi.errors import GatewayError
from reapi.limits import MemoryLimiter
from reapi.operations import codes as code_ops
from reapi.payments import codes
from reapi.store import queries, schema
from reapi.store.db import create_engine, migrate
from tests.harness import Gateway, gateway_settings

FORM = re.compile(r"^RC-[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}$")


async def books(g) -> list[str]:
    """`reapi ledger verify`'s two checks: the books and the top-ups against their credits."""
    from reapi.payments.audit import verify_topups

    async with g.gw.engine.connect() as conn:
        return await g.verify() + await verify_topups(conn)


@pytest.fixture
async def engine(store_url):
    await asyncio.to_thread(migrate, store_url)
    eng = create_engine(store_url)
    yield eng
    await eng.dispose()


async def new_account(engine, name="acme") -> int:
    async with engine.begin() as conn:
        return (await queries.create_account(conn, name))["id"]


async def balances(engine, account_id) -> dict:
    async with engine.connect() as conn:
        return await queries.balances(conn, account_id)


async def mint(engine, amount="10.00", count=1, **kw) -> list[str]:
    async with engine.begin() as conn:
        return (await code_ops.create_codes(conn, amount, count, **kw))["codes"]


async def redeem(engine, account_id, code):
    async with engine.begin() as conn:
        return await code_ops.redeem_code(conn, account_id, code)


def test_codes_look_right_and_carry_80_bits():
    seen = {codes.new_code() for _ in range(2000)}
    assert len(seen) == 2000 and all(FORM.match(c) for c in seen)
    assert len(codes.ALPHABET) == 32 and codes.BODY_CHARS * 5 >= 80
    c = codes.new_code()
    body = c[3:].replace("-", "")
    # forgiving input: case, spaces, no dashes, O for 0 and I/L for 1
    assert codes.canonical(c.lower()) == body
    assert codes.canonical(" " + c.replace("-", " ") + "\n") == body
    assert codes.canonical("rc" + body) == body
    assert codes.canonical("RC-0000-1111-0000-1111".replace("0", "O").replace("1", "l")) == "0000111100001111"
    for bad in ("", "RC-", "RC-AAAA-AAAA-AAAA-AAA", "RC-AAAA-AAAA-AAAA-AAAAA", "RC-UUUU-AAAA-AAAA-AAAA",
                "x" * 1000, None, 12):
        assert codes.canonical(bad) is None  # type: ignore[arg-type]


async def test_redeem_once_and_every_refusal_moves_nothing(engine):
    acc, other = await new_account(engine), await new_account(engine, "other")
    [code] = await mint(engine, "12.50", 1, note="launch")
    async with engine.connect() as conn:
        row = (await conn.execute(select(schema.redemption_codes))).mappings().one()
        stored = " ".join(str(v) for v in row.values())
    assert code not in stored and code[3:].replace("-", "") not in stored  # only the hash is kept
    assert row["code_hash"] == hashlib.sha256(code.encode()).hexdigest() and row["last4"] == code[-4:]

    r = await redeem(engine, acc, code.lower().replace("-", ""))
    assert (r.amount_nano, r.wallet, r.balance_nano) == (12_500_000_000, "chat", 12_500_000_000)
    assert await balances(engine, acc) == {"chat": 12_500_000_000, "tasks": 0}
    async with engine.connect() as conn:
        [entry] = (await conn.execute(select(schema.ledger).where(schema.ledger.c.account_id == acc))).mappings()
        topup = (await conn.execute(select(schema.topups))).mappings().one()
    assert (entry["kind"], entry["amount_nano"], entry["request_id"], entry["wallet"]) == (
        "credit", 12_500_000_000, f"code_{row['id']}", "chat")
    assert (topup["method"], topup["status"], topup["code_id"], topup["account_id"]) == ("code", "paid", row["id"], acc)

    refusals = {"code_redeemed": code, "code_invalid": codes.new_code()}
    [expiring] = await mint(engine, "5", 1, wallet="tasks", expires_at="2099-01-01")
    async with engine.begin() as conn:  # let it expire
        await conn.execute(schema.redemption_codes.update().values(expires_at=1)
                           .where(schema.redemption_codes.c.last4 == expiring[-4:]))
    refusals["code_expired"] = expiring
    messages = set()
    for want, c in [*refusals.items(), ("code_invalid", "not a code"), ("code_redeemed", code)]:
        for who in (acc, other):
            with pytest.raises(GatewayError) as err:
                await redeem(engine, who, c)
            assert (err.value.status, err.value.code, err.value.param) == (400, want, "code")
            messages.add((want, err.value.message))
    assert len({m for _, m in messages}) == 3  # a distinct message for each refusal
    assert await balances(engine, acc) == {"chat": 12_500_000_000, "tasks": 0}
    assert await balances(engine, other) == {"chat": 0, "tasks": 0}
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM topups"))).scalar() == 1
        assert await verify(conn) == []


async def test_a_tasks_code_credits_the_tasks_wallet(engine):
    acc = await new_account(engine)
    [code] = await mint(engine, "3.000000001", 1, wallet="tasks")
    assert (await redeem(engine, acc, code)).balance_nano == 3_000_000_001
    assert await balances(engine, acc) == {"chat": 0, "tasks": 3_000_000_001}


async def test_twenty_accounts_racing_for_one_code_get_one_credit(engine):
    accounts = [await new_account(engine, f"a{i}") for i in range(20)]
    [code] = await mint(engine, "7.00", 1)
    start = asyncio.Event()

    async def attempt(acc):
        await start.wait()
        try:
            return await redeem(engine, acc, code)
        except GatewayError as err:
            return err.code

    tasks = [asyncio.create_task(attempt(a)) for a in accounts]
    await asyncio.sleep(0.05)
    start.set()
    results = await asyncio.gather(*tasks)
    wins = [r for r in results if isinstance(r, codes.Redeemed)]
    assert len(wins) == 1 and sorted(set(r for r in results if isinstance(r, str))) == ["code_redeemed"]
    total = sum([(await balances(engine, a))["chat"] for a in accounts])
    assert total == 7_000_000_000
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM ledger WHERE kind = 'credit'"))).scalar() == 1
        assert (await conn.execute(text("SELECT count(*) FROM topups"))).scalar() == 1
        assert await verify(conn) == []


async def test_mint_refuses_bad_values(engine):
    for kw, param in (({"amount": "0"}, "amount_usd"), ({"amount": "1.5e3x"}, "amount_usd"),
                      ({"amount": "100001"}, "amount_usd"), ({"count": 0}, "count"), ({"count": 1001}, "count"),
                      ({"wallet": "gold"}, "wallet"), ({"expires_at": "2001-01-01"}, "expires_at"),
                      ({"expires_at": "soon"}, "expires_at"), ({"note": "x" * 501}, "note")):
        args = {"amount": "1.00", "count": 1, **kw}
        with pytest.raises(GatewayError) as err:
            async with engine.begin() as conn:
                await code_ops.create_codes(conn, args.pop("amount"), args.pop("count"), **args)
        assert (err.value.status, err.value.param) == (400, param), (kw, err.value)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM redemption_codes"))).scalar() == 0


async def test_redemption_attempts_are_throttled_per_account(engine):
    limiter = MemoryLimiter()
    acc, other = await new_account(engine), await new_account(engine, "other")
    [code] = await mint(engine, "1.00", 1)
    outcomes = []
    for _ in range(codes.REDEEM_PER_MINUTE):  # guesses use up the budget
        with pytest.raises(GatewayError) as err:
            await code_ops.redeem_throttled(engine, limiter, acc, codes.new_code())
        outcomes.append(err.value.code)
    assert outcomes == ["code_invalid"] * codes.REDEEM_PER_MINUTE
    with pytest.raises(GatewayError) as err:  # even the right code waits now
        await code_ops.redeem_throttled(engine, limiter, acc, code)
    assert (err.value.status, err.value.code, err.value.type) == (429, "redeem_throttled", "requests")
    assert 1 <= int(err.value.headers["retry-after"]) <= 6
    assert await balances(engine, acc) == {"chat": 0, "tasks": 0}
    r = await code_ops.redeem_throttled(engine, limiter, other, code)  # another account is not affected
    assert r.balance_nano == 1_000_000_000


async def test_admin_api_mints_and_lists_masked(sqlite_url):
    gw = await Gateway(gateway_settings(sqlite_url)).start()
    try:
        b = await gw.admin("POST", "/admin/codes", {"amount_usd": "10.00", "count": 3, "wallet": "tasks",
                                                     "expires_at": "2099-01-01", "note": "promo"}, expect=201)
        assert b["count"] == 3 and len(set(b["codes"])) == 3 and all(FORM.match(c) for c in b["codes"])
        assert (b["amount_usd"], b["wallet"], b["expires_at"], b["note"]) == ("10.00", "tasks",
                                                                             "2099-01-01T00:00:00.000Z", "promo")
        listed = await gw.admin("GET", "/admin/codes", expect=200)
        assert [r["code"] for r in listed["data"]] == ["RC-****-****-****-" + c[-4:] for c in reversed(b["codes"])]
        assert not any(c in str(listed) for c in b["codes"])
        for bad in ({"amount_usd": 10.5, "count": 1}, {"amount_usd": "1", "count": 5000},
                    {"amount_usd": "1", "count": 1, "wallet": "x"}, {"amount_usd": "1", "count": 1, "extra": 1}):
            err = await gw.admin("POST", "/admin/codes", bad, expect=400)
            assert err["error"]["type"] == "invalid_request_error"
        status, _, _ = await gw.raw("GET", "/admin/codes")
        assert status == 401
        acc = await gw.admin("POST", "/admin/accounts", {"name": "a"}, expect=201)
        async with gw.gw.engine.begin() as conn:
            await code_ops.redeem_code(conn, acc["id"], b["codes"][0])
        first = (await gw.admin("GET", "/admin/codes?limit=1", expect=200))
        assert first["next_before_id"] is not None
        rest = await gw.admin("GET", f"/admin/codes?before_id={first['next_before_id']}", expect=200)
        redeemed = [r for r in first["data"] + rest["data"] if r["redeemed"]]
        assert [r["redeemed_by"] for r in redeemed] == [acc["id"]]
        assert (await gw.admin("GET", f"/admin/accounts/{acc['id']}"))["balances"]["tasks"] == "10.00"
        assert await books(gw) == []
    finally:
        await gw.stop()


def test_cli_creates_and_lists_codes(tmp_path):
    runner = CliRunner(env={"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"})
    assert runner.invoke(main, ["migrate"]).exit_code == 0
    out = runner.invoke(main, ["codes", "create", "--amount", "10.00", "--count", "5", "--wallet", "tasks",
                               "--expires", "2099-01-01", "--note", "fair"])
    assert out.exit_code == 0, out.output
    minted = out.stdout.split()
    assert len(minted) == 5 and all(FORM.match(c) for c in minted)
    assert "shown once" in out.stderr
    listed = runner.invoke(main, ["codes", "list"])
    assert listed.exit_code == 0 and len(listed.stdout.splitlines()) == 5
    assert all(c not in listed.stdout and c[-4:] in listed.stdout for c in minted)
    assert "unused" in listed.stdout and "10.00 USD" in listed.stdout
    bad = runner.invoke(main, ["codes", "create", "--amount", "-1", "--count", "5"])
    assert bad.exit_code == 2 and "--amount" in bad.output and "Traceback" not in bad.output
    bad = runner.invoke(main, ["codes", "create", "--amount", "1", "--expires", "yesterday"])
    assert bad.exit_code == 2 and "--expires" in bad.output
