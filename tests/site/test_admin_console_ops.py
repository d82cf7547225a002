"""The operator console's Groups and Redemption codes pages and the overview's on-demand ledger check,
over real HTTP on SQLite and PostgreSQL: only an admin opens them (a customer 403, a guest to sign in),
every POST needs its CSRF token, limits go through reapi.operations.groups and are enforced, a minted
batch is shown once and then only masked, and a customer redeems one of its codes."""
from __future__ import annotations

import re

from sqlalchemy import text

from tests.site.test_admin_console import ADMIN_EMAIL, make_admin, unlabelled

PAGES = ("/admin/console/groups", "/admin/console/codes")
CODE = re.compile(r"RC(?:-[A-Z0-9]{4}){4}")


async def admin_client(console, web):
    await make_admin(console)
    ops = web()
    st, _, _ = await ops.login(ADMIN_EMAIL)
    assert st in (302, 303)
    return ops


async def test_only_admins_open_the_pages_and_every_post_needs_csrf(console, web):
    customer = web()
    await customer.signup("customer@example.com")
    guest = web()
    ops = await admin_client(console, web)
    for path in PAGES:
        st, _, _ = await customer.get(path)
        assert st == 403, path
        st, h, _ = await guest.get(path)
        assert st in (302, 303) and h["location"].startswith("/login?next="), path
        st, _, body = await ops.get(path)
        assert st == 200 and unlabelled(body) == [], path
    posts = {"/admin/console/groups": {"name": "vip", "rpm": "5"},
             "/admin/console/codes": {"amount_usd": "1", "count": "1"},
             "/admin/console/ledger/verify": {}}
    for path, form in posts.items():
        st, _, _ = await customer.post(path, form)
        assert st == 403, path
        st, _, _ = await ops.post(path, {**form, "csrf_token": "wrong"})
        assert st == 403, path
    async with console.gw.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM redemption_codes"))).scalar_one() == 0
        assert (await conn.execute(text("SELECT count(*) FROM groups WHERE name = 'vip'"))).scalar_one() == 0


async def test_groups_page_sets_limits_that_the_gateway_enforces(console, web, upstream):
    ops = await admin_client(console, web)
    st, _, body = await ops.get("/admin/console/groups")
    assert 'id="group-default"' in body
    st, _, body = await ops.post("/admin/console/groups", {"name": "default", "rpm": "2", "tpm": "",
                                                           "total_rpm": "", "total_tpm": "1000000"})
    assert st == 303
    _, _, body = await ops.get("/admin/console/groups?saved=default")
    row = body.split('id="group-default"', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num" data-limit="rpm">2</td>' in row and '<td class="num" data-limit="tpm">unlimited</td>' in row
    assert '<td class="num" data-limit="total_tpm">1,000,000</td>' in row
    listed = {g["name"]: g for g in (await console.admin("GET", "/admin/groups"))["data"]}
    assert listed["default"] == {"name": "default", "rpm": 2, "tpm": None, "total_rpm": None, "total_tpm": 1_000_000}
    # the limit is live: a key in `default` gets 2 calls a minute
    acc = await console.admin("POST", "/admin/accounts", {"name": "rl"}, expect=201)
    await console.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "5"}, expect=201)
    key = (await console.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k"}, expect=201))["key"]
    body = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
    statuses = [(await console.raw("POST", "/v1/chat/completions", json=body,
                                   headers={"Authorization": f"Bearer {key}"}))[0] for _ in range(3)]
    assert statuses == [200, 200, 429], statuses
    # a bad value comes back on the form naming the field, nothing stored
    st, _, body = await ops.post("/admin/console/groups", {"name": "vip", "rpm": "-3"})
    assert st == 400 and 'id="form-error"' in body and "rpm" in body
    st, _, body = await ops.post("/admin/console/groups", {"name": "vip", "tpm": "lots"})
    assert st == 400 and "tpm" in body
    st, _, body = await ops.post("/admin/console/groups", {"name": "", "rpm": "1"})
    assert st == 400 and 'id="form-error"' in body
    assert "vip" not in {g["name"] for g in (await console.admin("GET", "/admin/groups"))["data"]}
    # any name without control characters is a group name (the floor's rule); the notice escapes it
    st, h, _ = await ops.post("/admin/console/groups", {"name": "team <b>&", "rpm": "7"})
    assert st == 303
    _, _, body = await ops.get(h["location"])
    assert "Saved group team &lt;b&gt;&amp;." in body and 'data-limit="rpm">7</td>' in body
    assert await console.verify() == []


async def test_codes_are_shown_once_listed_masked_and_redeemable(console, web):
    ops = await admin_client(console, web)
    st, _, body = await ops.get("/admin/console/codes")
    assert st == 200 and "No codes yet." in body
    st, _, body = await ops.post("/admin/console/codes", {"amount_usd": "2.50", "count": "3", "wallet": "chat",
                                                          "note": "launch"})
    assert st == 200, body[:500]
    minted = body.split('id="minted-codes">', 1)[1].split("</code>", 1)[0]
    codes = CODE.findall(minted)
    assert len(codes) == 3 and len(set(codes)) == 3
    assert "3 code(s) of $2.50" in body
    _, _, page = await ops.get("/admin/console/codes")
    for c in codes:
        assert c not in page  # shown once: afterwards only masked
        assert f"RC-****-****-****-{c[-4:]}" in page
    assert page.count("launch") == 3 and 'id="minted"' not in page
    async with console.gw.engine.connect() as conn:
        stored = " ".join(str(v) for row in (await conn.execute(text("SELECT * FROM redemption_codes"))).all()
                          for v in row)
    assert not any(c in stored for c in codes)
    # a customer redeems one in their console: the list shows it redeemed, the ledger balances
    customer = web()
    await customer.signup("buyer@example.com")
    await customer.get("/console/topup")
    st, _, _ = await customer.post("/console/topup/redeem", {"code": codes[0]})
    assert st in (200, 303), st
    _, _, page = await ops.get("/admin/console/codes")
    assert page.count("by account ") == 1
    # bad values come back on the form, nothing minted
    for form, field in (({"amount_usd": "abc", "count": "1"}, "amount_usd"),
                        ({"amount_usd": "1", "count": "100000"}, "count"),
                        ({"amount_usd": "1", "count": "1", "wallet": "gold"}, "wallet"),
                        ({"amount_usd": "1", "count": "1", "expires_at": "2001-01-01"}, "expires_at")):
        st, _, body = await ops.post("/admin/console/codes", form)
        assert st == 400 and 'id="form-error"' in body and field in body, (form, body[:300])
        assert 'id="minted"' not in body
    async with console.gw.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM redemption_codes"))).scalar_one() == 3
    assert await console.verify() == []


async def test_ledger_status_runs_on_demand(console, web):
    ops = await admin_client(console, web)
    acc = await console.admin("POST", "/admin/accounts", {"name": "books"}, expect=201)
    await console.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "3"}, expect=201)
    _, _, body = await ops.get("/admin/console")
    assert 'id="ledger-status"' not in body  # not run on a plain visit and "Verify the ledger now" in body
    st, _, body = await ops.post("/admin/console/ledger/verify", {})
    assert st == 200
    assert re.search(r'id="ledger-status"[^>]*>ledger ok: every balance equals the sum of its entries', body), body
    # break the books behind the gateway's back: the status line says so and names the wallet
    async with console.gw.engine.begin() as conn:
        await conn.execute(text("UPDATE wallets SET balance_nano = balance_nano + 1 "
                                "WHERE account_id = :a AND wallet = 'chat'"), {"a": acc["id"]})
    st, _, body = await ops.post("/admin/console/ledger/verify", {})
    assert st == 200 and "ledger: 1 problem(s)" in body, re.findall(r"<section id=\"ledger\">.*?</section>", body, re.S)
    assert f"account {acc['id']} wallet chat: balance" in body
    async with console.gw.engine.begin() as conn:
        await conn.execute(text("UPDATE wallets SET balance_nano = balance_nano - 1 "
                                "WHERE account_id = :a AND wallet = 'chat'"), {"a": acc["id"]})
