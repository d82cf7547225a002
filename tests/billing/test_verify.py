"""`ledger verify` reports rows tampered with in ways that keep every balance equal to its
ledger and every request's total equal to its cost (which the balance checks cannot see)."""
import pytest

from reapi.billing.ledger import Release
from tests.billing.test_money_values import BALANCE, Books


@pytest.fixture
async def books(store_url):
    b = await Books(store_url).start()
    yield b
    await b.stop()


async def settled(books: Books, hold: int, cost: int) -> str:
    rid = await books.hold(hold)
    assert await books.writer.submit(books.settlement(rid, hold, cost)) == cost
    return rid


async def test_tampered_rows_are_reported(books):
    charge_credits = await settled(books, 1_000, 300)
    hold_credits = await settled(books, 2_000, 500)
    negative_cost = await books.hold(4_000)
    assert await books.writer.submit(Release(negative_cost, books.account, 1, False, 4_000))
    negative_tokens = await settled(books, 1_000, 100)
    unpaired = await settled(books, 5_000, 700)
    assert await books.verify() == []
    L = "UPDATE ledger SET amount_nano = {} WHERE kind = '{}' AND request_id = '{}'"
    await books.sql(
        # the charge credits (+300), its release gives back 600 less: same request total, same balance
        L.format(300, "charge", charge_credits), L.format(1_000 - 600, "release", charge_credits),
        # the hold credits and its release takes: same totals
        L.format(2_000, "hold", hold_credits), L.format(-2_000, "release", hold_credits),
        # a failed call that "cost" -5 and gave 5: cost, ledger and balance all agree
        "UPDATE usage SET cost_nano = -5 WHERE request_id = '%s'" % negative_cost,
        "INSERT INTO ledger (account_id, kind, amount_nano, request_id, created_at) "
        f"VALUES ({books.account}, 'charge', 5, '{negative_cost}', 0)",
        f"UPDATE wallets SET balance_nano = balance_nano + 5 WHERE account_id = {books.account} AND wallet = 'chat'",
        f"UPDATE usage SET prompt_tokens = -1, completion_tokens = -2 WHERE request_id = '{negative_tokens}'",
        # hold and release of different sizes, still summing to the charge
        L.format(-5_001, "hold", unpaired), L.format(5_001, "release", unpaired),
    )
    problems = await books.verify()
    text = "\n".join(problems)
    assert "amount 300 has the wrong sign for a charge" in text
    assert "amount 2000 has the wrong sign for a hold" in text
    assert "amount -2000 has the wrong sign for a release" in text
    assert f"usage {negative_cost} (failed): negative cost_nano -5" in text
    assert "amount 5 has the wrong sign for a charge" in text
    assert f"usage {negative_tokens} (ok): negative prompt_tokens -1" in text
    assert f"usage {negative_tokens} (ok): negative completion_tokens -2" in text
    assert f"usage {unpaired} (ok): 1 hold entry of -5001 for a hold of 5000" in text
    assert f"usage {unpaired} (ok): 1 release entry of 5001 for a hold of 5000" in text
    assert f"usage {charge_credits} (ok): 1 release entry of 400 for a hold of 1000" in text
    # none of it moved a balance away from its ledger, nor a request's total away from its cost
    assert "!= ledger" not in text
    assert await books.balance() == BALANCE - 300 - 500 - 100 - 700 + 5


async def test_entries_without_usage_and_a_second_release_are_reported(books):
    rid = await settled(books, 1_000, 400)
    await books.sql(
        "INSERT INTO ledger (account_id, kind, amount_nano, request_id, created_at) "
        f"VALUES ({books.account}, 'release', 50, '{rid}', 0), ({books.account}, 'charge', -50, '{rid}', 0), "
        f"({books.account}, 'hold', -9, 'ghost', 0), ({books.account}, 'release', 9, 'ghost', 0)")
    text = "\n".join(await books.verify())
    assert f"usage {rid} (ok): 2 release entries of 1050 for a hold of 1000" in text
    assert f"usage {rid} (ok): charge entries of -450 for a cost of 400" in text
    assert "ledger entries for request ghost without a usage record" in text
    assert "!= ledger" not in text
