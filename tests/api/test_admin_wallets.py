"""Wallets through the admin API (issue #13): keys name a workspace, credits a wallet, an account
shows a balance per wallet. Needs helper G3's wallets (ledger Credit(wallet=), api_keys.workspace)."""
import openai
import pytest

from tests.harness import Gateway, gateway_settings

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def gw(store_url):
    g = await Gateway(gateway_settings(store_url)).start()
    yield g
    await g.stop()


async def test_bad_wallet_or_workspace_is_400_naming_it(gateway):
    acc = await gateway.admin("POST", "/admin/accounts", {"name": "a"}, expect=201)
    err = (await gateway.admin("POST", f"/admin/accounts/{acc['id']}/credits",
                               {"amount_usd": "1", "wallet": "savings"}, expect=400))["error"]
    assert err["param"] == "wallet"
    err = (await gateway.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"workspace": "x"}, expect=400))["error"]
    assert err["param"] == "workspace"
    got = await gateway.admin("GET", f"/admin/accounts/{acc['id']}", expect=200)
    assert got["balances"] == {"chat": "0.00", "tasks": "0.00"} and got["balance_usd"] == "0.00"


async def test_wallets_keys_and_balances(gw, upstream):
    s = await gw.setup(upstream, balance="12.50")
    aid = s["account_id"]
    c = await gw.admin("POST", f"/admin/accounts/{aid}/credits", {"amount_usd": "3.00", "wallet": "tasks"},
                       expect=201)
    assert (c["wallet"], c["amount_usd"], c["balance_usd"]) == ("tasks", "3.00", "3.00")
    acc = await gw.admin("GET", f"/admin/accounts/{aid}", expect=200)
    assert acc["balances"] == {"chat": "12.50", "tasks": "3.00"} and acc["balance_usd"] == "12.50"

    tasks = await gw.admin("POST", f"/admin/accounts/{aid}/keys", {"name": "t", "workspace": "tasks"}, expect=201)
    assert tasks["key"].startswith("rk_live_") and tasks["workspace"] == "tasks"
    listed = {k["id"]: k for k in (await gw.admin("GET", f"/admin/accounts/{aid}/keys"))["data"]}
    assert listed[tasks["id"]]["workspace"] == "tasks" and listed[tasks["id"]]["key_prefix"].startswith("rk_live_")
    assert listed[s["key_id"]]["workspace"] == "chat"
    # /v1 refuses a tasks key exactly like an unknown one
    with pytest.raises(openai.AuthenticationError) as ei:
        await gw.client(tasks["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
    assert ei.value.code == "invalid_api_key"
    await gw.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
    acc = await gw.admin("GET", f"/admin/accounts/{aid}", expect=200)
    assert acc["balances"]["tasks"] == "3.00" and acc["balance_usd"] == acc["balances"]["chat"] != "12.50"
    assert await gw.verify() == []


async def test_admin_debit_is_an_adjustment_and_never_overdraws(gw, upstream):
    s = await gw.setup(upstream, balance="5.00")
    aid = s["account_id"]
    d = await gw.admin("POST", f"/admin/accounts/{aid}/debits", {"amount_usd": "1.25", "note": "refund reversal"},
                       expect=201)
    assert (d["wallet"], d["amount_usd"], d["balance_usd"], d["note"]) == ("chat", "1.25", "3.75", "refund reversal")
    err = await gw.admin("POST", f"/admin/accounts/{aid}/debits", {"amount_usd": "3.76"}, expect=400)
    assert err["error"]["param"] == "amount_usd"
    for bad in ({"amount_usd": "0"}, {"amount_usd": "-1"}, {"amount_usd": "1", "wallet": "gold"}):
        await gw.admin("POST", f"/admin/accounts/{aid}/debits", bad, expect=400)
    await gw.admin("POST", "/admin/accounts/999999/debits", {"amount_usd": "1"}, expect=404)
    await gw.admin("POST", f"/admin/accounts/{aid}/debits", {"amount_usd": "3.75", "wallet": "chat"}, expect=201)
    assert await gw.balance(aid) == "0.00"
    entries = (await gw.admin("GET", f"/admin/accounts/{aid}/ledger"))["data"]
    assert sorted(e["amount_usd"] for e in entries if e["kind"] == "adjustment") == ["-1.25", "-3.75"]
    assert await gw.verify() == []
