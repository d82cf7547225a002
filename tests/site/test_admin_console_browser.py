"""Every operator console page's main action in Chromium (Playwright), on SQLite and PostgreSQL: an
admin signs in at /login?next=/admin/console/channels and lands there; adds a channel, edits it, disables
it, tests one; sets a model price and a group limit; credits and debits an account; revokes a key; mints
codes and exports the unused ones as CSV; looks a call up by its request id; runs the ledger check. Each
step is checked in the store through the admin API, not only on the page."""
from __future__ import annotations

import csv
import io
import re

from sqlalchemy import text

from tests.harness import UPSTREAM_KEY
from tests.site.test_admin_console import ADMIN_EMAIL, PASSWORD, make_admin

CODE = re.compile(r"RC(?:-[A-Z0-9]{4}){4}")


def operator_actions(b, base: str, upstream_url: str, aid: int, key_id: int, request_id: str) -> dict:
    ctx = b.new_context(accept_downloads=True)
    page = ctx.new_page()
    seen: dict = {"html": []}
    try:
        page.goto(base + "/login?next=/admin/console/channels")
        page.get_by_label("E-mail").fill(ADMIN_EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/admin/console/channels")
        seen["landed"] = page.url
        # add a channel
        page.get_by_label("Name", exact=True).fill("b-chan")
        page.get_by_label("Base URL").fill(upstream_url + "/v1")
        page.get_by_label("Upstream key").fill("sk-browser-upstream-1")
        page.get_by_label("Models", exact=True).fill("gpt-5.5")
        page.get_by_role("button", name="Add channel").click()
        page.wait_for_url(base + "/admin/console/channels?done=added")
        # edit it: a new name and weight, the key left blank
        page.get_by_role("link", name="Edit channel b-chan").click()
        page.wait_for_url(re.compile(r".*/admin/console/channels/\d+$"))
        seen["edit_key_value"] = page.get_by_label(re.compile("Upstream key")).input_value()
        seen["html"].append(page.content())
        page.get_by_label("Name", exact=True).fill("b-chan-edited")
        page.get_by_label("Weight").fill("4")
        page.get_by_role("button", name="Save channel").click()
        page.wait_for_url(base + "/admin/console/channels?done=saved")
        seen["saved_flash"] = page.locator(".flash.ok").inner_text()
        # disable it
        page.get_by_role("button", name="Disable channel b-chan-edited").click()
        page.wait_for_url(base + "/admin/console/channels?done=disabled")
        seen["channels"] = page.locator("#channels").inner_text()
        # test the seeded one
        page.get_by_role("button", name="Test channel mock").click()
        page.locator("#probe-result").wait_for()
        seen["probe"] = page.locator("#probe-result").inner_text()
        seen["html"].append(page.content())
        # set a model price
        page.goto(base + "/admin/console/models?model=gpt-5.5")
        page.get_by_label("Input USD per 1M", exact=True).fill("4.50")
        page.get_by_role("button", name="Save price").click()
        page.wait_for_url(base + "/admin/console/models?done=saved")
        # set a group limit
        page.goto(base + "/admin/console/groups")
        page.get_by_label("rpm of default", exact=True).fill("120")
        page.get_by_role("button", name="Save group default").click()
        page.wait_for_url(base + "/admin/console/groups?saved=default")
        seen["group_rpm"] = page.locator('#group-default td[data-limit="rpm"]').inner_text()
        # credit and debit an account on its page
        page.goto(base + "/admin/console/accounts?q=customer")
        page.get_by_role("link", name=f"Open account {aid}").click()
        page.wait_for_url(base + f"/admin/console/accounts/{aid}")
        page.get_by_label("Credit amount USD").fill("5.00")
        page.get_by_label("Credit note").fill("browser credit")
        page.get_by_role("button", name="Credit", exact=True).click()
        page.wait_for_url(base + f"/admin/console/accounts/{aid}?done=credited")
        page.get_by_label("Debit amount USD").fill("1.25")
        page.get_by_label("Debit note").fill("browser debit")
        page.get_by_role("button", name="Debit", exact=True).click()
        page.wait_for_url(base + f"/admin/console/accounts/{aid}?done=debited")
        seen["debit_flash"] = page.locator(".flash.ok").inner_text()
        seen["chat_balance"] = page.locator('#balances [data-wallet="chat"]').inner_text()
        seen["calls"] = page.locator("#calls").inner_text()
        # revoke a key
        page.get_by_role("link", name="Keys", exact=True).click()
        page.wait_for_url(base + f"/admin/console/accounts/{aid}/keys")
        page.get_by_role("button", name=f"Revoke key {key_id}").click()
        page.wait_for_url(base + f"/admin/console/accounts/{aid}/keys?done=revoked")
        seen["key_row"] = page.locator(f"#key-{key_id}").inner_text()
        # mint codes, then export the unused ones as CSV
        page.goto(base + "/admin/console/codes")
        page.get_by_label("Amount USD per code").fill("2.00")
        page.get_by_label(re.compile(r"^Count")).fill("2")
        page.get_by_role("button", name="Mint").click()
        page.locator("#minted-codes").wait_for()
        seen["minted"] = page.locator("#minted-codes").inner_text()
        page.goto(base + "/admin/console/codes")
        page.get_by_label("Show").select_option("unused")
        page.get_by_role("button", name="Filter").click()
        page.wait_for_url(base + "/admin/console/codes?status=unused")
        seen["codes_list"] = page.locator("#codes").inner_text()
        with page.expect_download() as dl:
            page.locator("#codes-csv").click()
        seen["csv_name"] = dl.value.suggested_filename
        with open(dl.value.path(), encoding="utf-8") as fh:
            seen["csv"] = fh.read()
        # usage by request id
        page.goto(base + "/admin/console/usage")
        page.get_by_label("Request id").fill(request_id)
        page.get_by_role("button", name="Find").click()
        page.locator("#usage-record").wait_for()
        seen["usage"] = page.locator("#usage-record").inner_text()
        # the ledger check
        page.goto(base + "/admin/console")
        page.get_by_role("button", name="Verify the ledger now").click()
        page.locator("#ledger-status").wait_for()
        seen["ledger"] = page.locator("#ledger-status").inner_text()
    finally:
        ctx.close()
    return seen


def customer_everywhere(b, base: str, email: str, paths: list[str]) -> dict[str, int]:
    ctx = b.new_context()
    page = ctx.new_page()
    try:
        page.goto(base + "/login?next=/admin/console/channels")
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/admin/console/channels")  # sent on, and refused there
        return {p: page.goto(base + p).status for p in paths}
    finally:
        ctx.close()


async def test_every_operator_page_main_action_in_chromium(browser, console, web, upstream):
    await make_admin(console)
    customer = web()
    await customer.signup("customer@example.com")
    aid = next(a for a in (await console.admin("GET", "/admin/users"))["data"]
               if a["email"] == "customer@example.com")["account_id"]
    await console.admin("POST", f"/admin/accounts/{aid}/credits", {"amount_usd": "1"}, expect=201)
    key = await console.admin("POST", f"/admin/accounts/{aid}/keys", {"name": "k"}, expect=201)
    raw = await console.client(key["key"]).chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    rid = raw.headers["x-request-id"]
    seen = await browser.run(operator_actions, console.url, upstream.url, aid, key["id"], rid)
    assert seen["landed"] == console.url + "/admin/console/channels"
    assert not any("sk-browser-upstream-1" in h or UPSTREAM_KEY in h for h in seen["html"])
    assert seen["edit_key_value"] == ""
    ch = next(c for c in (await console.admin("GET", "/admin/channels"))["data"] if c["name"] == "b-chan-edited")
    assert (ch["weight"], ch["enabled"]) == (4, False)
    async with console.gw.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT api_key FROM channels WHERE id = :c"), {"c": ch["id"]})).scalar_one()
    assert stored == "sk-browser-upstream-1"  # the blank key kept it
    assert "Channel saved." in seen["saved_flash"] and "disabled" in seen["channels"]
    assert "answered" in seen["probe"]
    price = next(m for m in (await console.admin("GET", "/admin/models"))["data"] if m["model"] == "gpt-5.5")
    assert price["input_usd_per_mtok"] == "4.50"
    assert seen["group_rpm"] == "120"
    groups = (await console.admin("GET", "/admin/groups"))["data"]
    assert next(g for g in groups if g["name"] == "default")["rpm"] == 120
    assert "Debited the account." in seen["debit_flash"]
    balance = (await console.admin("GET", f"/admin/accounts/{aid}"))["balances"]["chat"]
    assert seen["chat_balance"] == f"${balance}"
    ledger = (await console.admin("GET", f"/admin/accounts/{aid}/ledger"))["data"]
    assert [(e["kind"], e["amount_usd"], e["note"]) for e in ledger[:2]] == [
        ("adjustment", "-1.25", "browser debit"), ("credit", "5.00", "browser credit")]
    assert rid in seen["calls"] and f"…{key['key'][-4:]}" in seen["calls"]
    assert "revoked" in seen["key_row"]
    st, _, _ = await console.raw("POST", "/v1/chat/completions", json={"model": "gpt-5.5", "messages": [
        {"role": "user", "content": "hi"}]}, headers={"Authorization": f"Bearer {key['key']}"})
    assert st == 401
    minted = CODE.findall(seen["minted"])
    assert len(minted) == 2
    rows = list(csv.reader(io.StringIO(seen["csv"])))
    assert seen["csv_name"].startswith("codes-unused-") and seen["csv_name"].endswith(".csv")
    assert sorted(r[0] for r in rows[1:]) == sorted(f"RC-****-****-****-{c[-4:]}" for c in minted)
    assert not any(c in seen["csv"] or c in seen["codes_list"] for c in minted)
    assert rid in seen["usage"] and "gpt-5.5" in seen["usage"]
    assert seen["ledger"].startswith("ledger ok")
    assert await console.verify() == []


async def test_a_customer_gets_403_on_every_operator_page_in_chromium(browser, console, web):
    await make_admin(console)
    customer = web()
    await customer.signup("customer@example.com")
    paths = ["/admin/console", "/admin/console/channels", "/admin/console/channels/1", "/admin/console/models",
             "/admin/console/accounts", "/admin/console/accounts/1", "/admin/console/accounts/1/keys",
             "/admin/console/usage", "/admin/console/groups", "/admin/console/codes",
             "/admin/console/codes?status=unused", "/admin/console/codes.csv"]
    statuses = await browser.run(customer_everywhere, console.url, "customer@example.com", paths)
    assert statuses == {p: 403 for p in paths}
