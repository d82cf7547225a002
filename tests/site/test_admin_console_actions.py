"""The operator console's actions of issue #12 over real HTTP, on SQLite and PostgreSQL: edit a channel
(through ops.update_channel, the upstream key write-only: blank keeps it, never shown), debit an
account (a ledger adjustment, never below zero), an account's recent calls and tasks, redemption codes
filtered used / unused and exported as CSV (masked as listed), sign-in's `next` to the operator console
(and nowhere off-site); a customer gets 403 and a POST without its CSRF token 403 on every new path."""
from __future__ import annotations

import csv
import io
import re

import orjson
from sqlalchemy import text

from tests.console.conftest import WebClient
from tests.harness import UPSTREAM_KEY
from tests.site.test_admin_console import ADMIN_EMAIL, PASSWORD, make_admin, unlabelled
from tests.site.test_admin_console_ops import CODE, admin_client
from tests.tasks.conftest import tg  # noqa: F401

NEW_GETS = ("/admin/console/channels/1", "/admin/console/accounts/1", "/admin/console/codes?status=used",
            "/admin/console/codes.csv", "/admin/console/codes.csv?status=unused")
NEW_POSTS = {"/admin/console/channels/1": {"name": "hijacked", "type": "openai", "base_url": "https://x.example/v1",
                                           "models": "m"},
             "/admin/console/accounts/1/debit": {"amount_usd": "1"}}


def form_error(body: str) -> str:
    m = re.search(r'id="form-error">(.*?)</p>', body, re.S)
    return m.group(1) if m else ""


async def stored_url(gw, cid: int) -> str:
    async with gw.gw.engine.connect() as conn:
        return (await conn.execute(text("SELECT base_url FROM channels WHERE id = :i"), {"i": cid})).scalar_one()


async def stored_key(console, cid: int) -> str:
    async with console.gw.engine.connect() as conn:
        return (await conn.execute(text("SELECT api_key FROM channels WHERE id = :c"), {"c": cid})).scalar_one()


async def test_new_pages_are_for_admins_only_and_new_posts_need_csrf(console, web):
    customer = web()
    await customer.signup("customer@example.com")
    guest = web()
    ops = await admin_client(console, web)
    for path in NEW_GETS:
        st, _, _ = await customer.get(path)
        assert st == 403, path
        st, h, _ = await guest.get(path)
        assert st in (302, 303) and h["location"].startswith("/login?next="), path
        st, h, body = await ops.get(path)
        assert st == 200, (path, body[:300])
        assert UPSTREAM_KEY not in body
        if "csv" not in path:
            assert unlabelled(body) == [], path
    for path, form in NEW_POSTS.items():
        st, _, _ = await customer.post(path, form)
        assert st == 403, path
        st, _, _ = await ops.post(path, {**form, "csrf_token": "wrong"})
        assert st == 403, path
        st, _, _ = await ops.post(path, form, csrf=False)
        assert st == 403, path
    assert (await console.admin("GET", "/admin/channels/1"))["name"] == "mock"
    async with console.gw.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM ledger WHERE kind = 'adjustment'"))).scalar_one() == 0


async def test_edit_a_channel_keeps_or_replaces_its_write_only_key(console, web, upstream):
    ops = await admin_client(console, web)
    cid = (await console.admin("GET", "/admin/channels"))["data"][0]["id"]
    st, _, body = await ops.get(f"/admin/console/channels/{cid}")
    assert st == 200 and 'id="edit-channel"' in body and 'value="mock"' in body
    # the upstream URL and key are write-only: no page, form or JSON context shows them
    host = upstream.url.split("//", 1)[1]
    assert host not in body and UPSTREAM_KEY not in body
    _, _, listing = await ops.get("/admin/console/channels")
    assert f'href="/admin/console/channels/{cid}"' in listing and host not in listing
    # blank base URL and key: every other field changes, the stored ones stay
    st, h, _ = await ops.post(f"/admin/console/channels/{cid}", {
        "name": "mock", "type": "openai", "base_url": "", "api_key": "", "models": "gpt-5.5", "groups": "default"})
    assert st == 303 and await stored_url(console, cid) == upstream.url + "/v1"
    # blank key: every other field changes, the stored key stays
    st, h, _ = await ops.post(f"/admin/console/channels/{cid}", {
        "name": "mock-edited", "type": "openai", "base_url": upstream.url + "/v1", "api_key": "",
        "models": "gpt-5.5, gpt-5.4", "groups": "default, vip", "priority": "5", "weight": "3"})
    assert st == 303 and h["location"] == "/admin/console/channels?done=saved"
    ch = await console.admin("GET", f"/admin/channels/{cid}")
    assert (ch["name"], ch["models"], ch["groups"], ch["priority"], ch["weight"]) == (
        "mock-edited", ["gpt-5.5", "gpt-5.4"], ["default", "vip"], 5, 3)
    assert await stored_key(console, cid) == UPSTREAM_KEY
    # the channel still serves (the catalog reloaded with the same key)
    acc = await console.admin("POST", "/admin/accounts", {"name": "caller"}, expect=201)
    await console.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "5"}, expect=201)
    key = (await console.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k"}, expect=201))["key"]
    st, _, _ = await console.raw("POST", "/v1/chat/completions", json={
        "model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"})
    assert st == 200
    # a new key replaces it; no page shows either
    st, _, _ = await ops.post(f"/admin/console/channels/{cid}", {
        "name": "mock-edited", "type": "openai", "base_url": upstream.url + "/v1", "api_key": "sk-replaced-key-7",
        "models": "gpt-5.5", "groups": "default"})
    assert st == 303
    assert await stored_key(console, cid) == "sk-replaced-key-7"
    for path in (f"/admin/console/channels/{cid}", "/admin/console/channels"):
        _, _, body = await ops.get(path)
        assert "sk-replaced-key-7" not in body and UPSTREAM_KEY not in body
        st, _, body = await ops.get(path, headers={"Accept": "application/json"})  # the page's JSON context
        assert st == 200 and "sk-replaced-key-7" not in body and "api_key" not in body and host not in body
    # the operations layer's validation, on the form, naming the field; the typed key is not echoed
    for form, field in (({"base_url": "ftp://nowhere"}, "base_url"), ({"models": ""}, "models"),
                        ({"weight": "-1"}, "weight"), ({"priority": "high"}, "priority"), ({"type": "gopher"}, "type"),
                        ({"api_key": "sk bad\u00e9key"}, "api_key")):
        full = {"name": "x", "type": "openai", "base_url": upstream.url + "/v1", "models": "gpt-5.5",
                "api_key": "sk-typed-never-echoed", **form}
        st, _, body = await ops.post(f"/admin/console/channels/{cid}", full)
        assert st == 400 and field in form_error(body), (form, form_error(body))
        assert "sk-typed-never-echoed" not in body and "sk-replaced-key-7" not in body
    assert (await console.admin("GET", f"/admin/channels/{cid}"))["name"] == "mock-edited"
    assert await stored_key(console, cid) == "sk-replaced-key-7"
    st, _, _ = await ops.get("/admin/console/channels/999999")
    assert st == 404
    st, _, _ = await ops.post("/admin/console/channels/999999", {"name": "n", "type": "openai",
                                                                 "base_url": upstream.url, "models": "m"})
    assert st == 404


async def test_debit_is_a_ledger_adjustment_that_never_goes_below_zero(console, web):
    ops = await admin_client(console, web)
    acc = await console.admin("POST", "/admin/accounts", {"name": "debtor"}, expect=201)
    aid = acc["id"]
    await console.admin("POST", f"/admin/accounts/{aid}/credits", {"amount_usd": "10"}, expect=201)
    await console.admin("POST", f"/admin/accounts/{aid}/credits", {"amount_usd": "2", "wallet": "tasks"}, expect=201)
    st, _, body = await ops.get(f"/admin/console/accounts/{aid}")
    assert st == 200 and 'data-wallet="chat">$10.00' in body and 'data-wallet="tasks">$2.00' in body
    st, h, _ = await ops.post(f"/admin/console/accounts/{aid}/debit", {"amount_usd": "3.25", "wallet": "chat",
                                                                      "note": "refund reversal"})
    assert st == 303 and h["location"] == f"/admin/console/accounts/{aid}?done=debited"
    _, _, body = await ops.get(h["location"])
    assert "Debited the account." in body and 'data-wallet="chat">$6.75' in body
    assert (await console.admin("GET", f"/admin/accounts/{aid}"))["balances"] == {"chat": "6.75", "tasks": "2.00"}
    entry = (await console.admin("GET", f"/admin/accounts/{aid}/ledger"))["data"][0]
    assert (entry["kind"], entry["amount_usd"], entry["note"], entry["wallet"]) == (
        "adjustment", "-3.25", "refund reversal", "chat")
    # the whole balance may go, not a nano more; bad amounts are refused naming the field; nothing moves
    for form, field in (({"amount_usd": "6.750000001"}, "amount_usd"), ({"amount_usd": "2.01", "wallet": "tasks"},
                        "amount_usd"), ({"amount_usd": "-1"}, "amount_usd"), ({"amount_usd": "0"}, "amount_usd"),
                        ({"amount_usd": "lots"}, "amount_usd"), ({"amount_usd": "1", "wallet": "gold"}, "wallet")):
        st, _, body = await ops.post(f"/admin/console/accounts/{aid}/debit", form)
        assert st == 400, (form, body[:300])
        assert field in form_error(body), (form, form_error(body))
    assert (await console.admin("GET", f"/admin/accounts/{aid}"))["balances"] == {"chat": "6.75", "tasks": "2.00"}
    st, _, body = await ops.post(f"/admin/console/accounts/{aid}/debit", {"amount_usd": "99"})
    assert "a debit never takes a balance below zero" in body
    st, _, _ = await ops.post(f"/admin/console/accounts/{aid}/debit", {"amount_usd": "6.75"})
    assert st == 303
    assert (await console.admin("GET", f"/admin/accounts/{aid}"))["balances"]["chat"] == "0.00"
    # the account page's credit form comes back to the account page
    st, h, _ = await ops.post(f"/admin/console/accounts/{aid}/credit", {"amount_usd": "1", "from": "account"})
    assert st == 303 and h["location"] == f"/admin/console/accounts/{aid}?done=credited"
    st, _, _ = await ops.post("/admin/console/accounts/999999/debit", {"amount_usd": "1"})
    assert st == 404
    async with console.gw.engine.connect() as conn:
        kinds = [r[0] for r in (await conn.execute(text(
            "SELECT kind FROM ledger WHERE account_id = :a ORDER BY id"), {"a": aid})).all()]
    assert kinds == ["credit", "credit", "adjustment", "adjustment", "credit"]
    assert await console.verify() == []


async def test_account_page_lists_its_recent_calls(console, web):
    ops = await admin_client(console, web)
    acc = await console.admin("POST", "/admin/accounts", {"name": "busy"}, expect=201)
    other = await console.admin("POST", "/admin/accounts", {"name": "other"}, expect=201)
    for a in (acc, other):
        await console.admin("POST", f"/admin/accounts/{a['id']}/credits", {"amount_usd": "5"}, expect=201)
    key = await console.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k"}, expect=201)
    okey = await console.admin("POST", f"/admin/accounts/{other['id']}/keys", {"name": "o"}, expect=201)
    raw = await console.client(key["key"]).chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    rid = raw.headers["x-request-id"]
    oraw = await console.client(okey["key"]).chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    usage = (await console.admin("GET", f"/admin/accounts/{acc['id']}/usage"))["data"][0]
    st, _, body = await ops.get(f"/admin/console/accounts/{acc['id']}")
    assert st == 200
    row = body.split(f'data-request-id="{rid}"', 1)[1].split("</tr>", 1)[0]
    assert "gpt-5.5" in row and f"…{key['key'][-4:]}" in row and key["key"] not in body
    assert f"{usage['prompt_tokens']} / {usage['completion_tokens']} / 0" in row
    assert f"${usage['cost_usd']}" in row and ">ok<" in row
    assert oraw.headers["x-request-id"] not in body  # another account's call is not listed
    assert "No tasks yet." in body
    st, _, raw_json = await ops.get(f"/admin/console/accounts/{acc['id']}", headers={"Accept": "application/json"})
    ctx = orjson.loads(raw_json)  # the same context the page shows
    assert [c["request_id"] for c in ctx["calls"]] == [rid] and ctx["calls"][0]["key"] == f"…{key['key'][-4:]}"
    assert ctx["tasks"] == [] and key["key"] not in raw_json
    st, _, _ = await ops.get("/admin/console/accounts/999999")
    assert st == 404


async def test_account_page_lists_its_recent_tasks(tg):  # noqa: F811
    gw = tg.gw
    await make_admin(gw)
    ops = WebClient(gw.url)
    try:
        st, _, _ = await ops.login(ADMIN_EMAIL, PASSWORD)
        assert st in (302, 303)
        _, _, stuck = await tg.call("POST", "/videos/generations", {"model": "doubao-seedance-2.0",
                                                                    "prompt": "[ark stuck]"})
        _, _, done = await tg.call("POST", "/videos/generations", {"model": "doubao-seedance-2.0", "prompt": "fine"})
        await tg.wait(done["id"])
        listed = {t["id"]: t for t in (await gw.admin("GET", f"/admin/tasks?account={tg.account_id}"))["data"]}
        st, _, body = await ops.get(f"/admin/console/accounts/{tg.account_id}")
        assert st == 200
        rows = re.findall(r'<tr data-task-id="(task_\w+)">(.*?)</tr>', body, re.S)
        assert [r[0] for r in rows] == [done["id"], stuck["id"]]  # newest first
        done_row, stuck_row = rows[0][1], rows[1][1]
        assert "doubao-seedance-2.0" in done_row and ">completed<" in done_row
        assert listed[done["id"]]["cost_credits"] == "600"
        assert "$0.60" in done_row  # 600 credits = $0.60, what was captured
        assert listed[stuck["id"]]["state"] in stuck_row
    finally:
        await ops.close()


async def test_codes_filter_used_unused_and_export_csv_masked(console, web):
    ops = await admin_client(console, web)
    await ops.get("/admin/console/codes")  # the session's CSRF token
    st, _, body = await ops.post("/admin/console/codes", {"amount_usd": "1.50", "count": "3",
                                                          "note": "=cmd|' /C calc'!A0"})
    assert st == 200, form_error(body) or body[:500]
    codes = CODE.findall(body.split('id="minted-codes">', 1)[1].split("</code>", 1)[0])
    assert len(codes) == 3
    customer = web()
    await customer.signup("buyer@example.com")
    await customer.get("/console/topup")
    st, _, _ = await customer.post("/console/topup/redeem", {"code": codes[1]})
    assert st in (200, 303)
    masked = {c: f"RC-****-****-****-{c[-4:]}" for c in codes}

    def listed(page: str) -> list[str]:
        return re.findall(r"RC-\*{4}-\*{4}-\*{4}-[A-Z0-9]{4}", page.split('id="codes"', 1)[1])

    _, _, page = await ops.get("/admin/console/codes?status=used")
    assert listed(page) == [masked[codes[1]]] and 'value="used" selected' in page
    assert 'href="/admin/console/codes.csv?status=used"' in page
    _, _, page = await ops.get("/admin/console/codes?status=unused")
    assert sorted(listed(page)) == sorted([masked[codes[0]], masked[codes[2]]])
    _, _, page = await ops.get("/admin/console/codes")
    assert len(listed(page)) == 3 and 'href="/admin/console/codes.csv"' in page
    _, _, page = await ops.get("/admin/console/codes?status=<script>")  # anything else: every code
    assert len(listed(page)) == 3 and "<script>" not in page
    for status, want in (("used", [codes[1]]), ("unused", [codes[0], codes[2]]), ("", codes)):
        st, h, body = await ops.get("/admin/console/codes.csv" + (f"?status={status}" if status else ""))
        assert st == 200 and h["content-type"].startswith("text/csv")
        assert h["content-disposition"].startswith('attachment; filename="codes-')
        rows = list(csv.reader(io.StringIO(body)))
        assert rows[0] == ["code", "batch", "amount_usd", "wallet", "created_at", "expires_at", "redeemed",
                           "redeemed_by", "note"]
        assert sorted(r[0] for r in rows[1:]) == sorted(masked[c] for c in want), (status, rows)
        assert not any(c in body for c in codes)  # never the full code
        assert all(r[2] == "1.50" and r[8].startswith("'=") for r in rows[1:])  # a formula is defused
        assert all(r[6] == ("yes" if r[0] == masked[codes[1]] else "no") for r in rows[1:])


async def test_sign_in_goes_on_to_the_operator_console_and_nowhere_else(console, web):
    await make_admin(console)
    guest = web()
    st, h, _ = await guest.get("/admin/console/codes")
    assert h["location"] == "/login?next=/admin/console/codes"
    _, _, form = await guest.get(h["location"])
    assert 'value="/admin/console/codes"' in form  # the sign-in form carries it on
    st, h, _ = await guest.post("/login", {"email": ADMIN_EMAIL, "password": PASSWORD,
                                           "next": "/admin/console/codes?status=unused"})
    assert st in (302, 303) and h["location"] == "/admin/console/codes?status=unused"
    st, _, _ = await guest.get(h["location"])
    assert st == 200
    # a signed-in visitor of /login?next= is sent on too
    st, h, _ = await guest.get("/login?next=/admin/console/channels")
    assert st in (302, 303) and h["location"] == "/admin/console/channels"
    refused = ("//evil.com", "//evil.com/admin/console", "/\\evil.com", "/admin/console/\\evil.com",
               "/admin/console//evil.com", "http://evil.com/admin/console", "https:/admin/console",
               "javascript:alert(1)", "/admin/consolex", "/admin", "/admin/channels", "/admin/console/../../x",
               "/admin/console\r\nSet-Cookie: x=1", "/admin/console/\tx", " /admin/console", "/%2F/evil.com",
               "/admin/console/" + "a" * 600)
    for nxt in refused:
        c = web()
        await c.get("/login")
        st, h, _ = await c.post("/login", {"email": ADMIN_EMAIL, "password": PASSWORD, "next": nxt})
        assert st in (302, 303) and h["location"] == "/console", (nxt, h.get("location"))
        st, h, _ = await c.get("/login?next=" + nxt.replace("\r\n", "%0D%0A").replace("\t", "%09"))
        assert h["location"] == "/console", (nxt, h.get("location"))
