"""The console's money pages on a real gateway: top-up (redeem a code, pay through a fake Stripe,
past top-ups with their status), usage (rows of real openai-SDK calls, filters, keyset pages, the
SVG charts, the CSV download), billing (the statement with running balances); CSRF on every form,
one user never sees another's rows; and a real browser redeeming a code and finding a real call on
the usage page and in the CSV."""
from __future__ import annotations

import csv
import io
import json
import time

import pytest
import stripe as stripe_sdk

from reapi.payments import codes
from tests.console.conftest import WebClient, seed_model
from tests.harness import Gateway, gateway_settings
from tests.payments.fake_stripe import FakeStripe

SECRET = "whsec_pages_" + "k" * 20


async def books(g) -> list[str]:
    """`reapi ledger verify`'s two checks: the books and the top-ups against their credits."""
    from reapi.payments.audit import verify_topups

    async with g.gw.engine.connect() as conn:
        return await g.verify() + await verify_topups(conn)


async def signed_up(c: WebClient, email: str) -> WebClient:
    """A new user signed in on `c`, with the session's form token picked up."""
    assert (await c.signup(email))[0] == 303
    assert (await c.get("/console"))[0] == 200
    return c


async def mint(gw, amount="10.00", wallet="chat") -> str:
    return (await gw.admin("POST", "/admin/codes", {"amount_usd": amount, "count": 1, "wallet": wallet},
                           expect=201))["codes"][0]


async def me(c: WebClient) -> dict:
    status, _, body = await c.get("/console/account?format=json")
    assert status == 200
    return json.loads(body)


async def page_json(c: WebClient, path: str) -> dict:
    status, _, body = await c.get(path + ("&" if "?" in path else "?") + "format=json")
    assert status == 200, (path, status, body[:300])
    return json.loads(body)


async def user_key(gw, c: WebClient, name="laptop") -> str:
    status, _, body = await c.post("/console/keys", {"name": name})
    assert status == 201
    return body.split('id="new-key-value"', 1)[1].split(">", 1)[1].split("<", 1)[0]


async def test_redeem_a_code_on_the_top_up_page(console, web):
    c = web()
    await signed_up(c, "redeem@example.com")
    code = await mint(console, "12.50")
    status, _, html = await c.get("/console/topup")
    assert status == 200 and 'name="code"' in html and 'action="/console/topup/redeem"' in html
    assert "Pay by card" not in html  # Stripe is not configured on this gateway
    assert (await c.post("/console/topup/redeem", {"code": code}, csrf=False))[0] == 403
    assert (await page_json(c, "/console/topup"))["balances_usd"]["chat"] == "0.00"
    status, headers, _ = await c.post("/console/topup/redeem", {"code": code.lower()})
    assert status == 303 and headers["location"].startswith("/console/topup?redeemed=")
    status, _, html = await c.get(headers["location"])
    assert "12.50 USD added to your chat balance." in html and 'id="balance-chat">$12.50' in html
    data = await page_json(c, "/console/topup")
    assert [(t["method"], t["amount_usd"], t["status"]) for t in data["topups"]] == [("Redemption code", "12.50",
                                                                                      "paid")]
    for bad, message in ((code, "already been redeemed"), (codes.new_code(), "not a valid"), ("nope", "not a valid")):
        status, _, html = await c.post("/console/topup/redeem", {"code": bad})
        assert status == 400 and message in html and 'id="balance-chat">$12.50' in html
    # a second user cannot use it either, and sees nothing of the first one's
    d = web()
    await signed_up(d, "other@example.com")
    status, _, html = await d.post("/console/topup/redeem", {"code": code})
    assert status == 400 and "already been redeemed" in html
    assert (await page_json(d, "/console/topup"))["topups"] == []
    assert await books(console) == []


async def test_redemption_attempts_are_throttled(console, web):
    c = web()
    await signed_up(c, "guess@example.com")
    for _ in range(codes.REDEEM_PER_MINUTE - 1):
        assert (await c.post("/console/topup/redeem", {"code": codes.new_code()}))[0] == 400
    code = await mint(console)
    assert (await c.post("/console/topup/redeem", {"code": code}))[0] == 303  # the 10th attempt
    status, headers, html = await c.post("/console/topup/redeem", {"code": codes.new_code()})
    assert status == 429 and "Too many redemption attempts" in html and int(headers["retry-after"]) >= 1


@pytest.fixture
async def paying(sqlite_url, upstream):
    fake = await FakeStripe().start()
    gw = await Gateway(gateway_settings(sqlite_url, stripe_secret_key="sk_test_pages", stripe_webhook_secret=SECRET,
                                        stripe_api_base=fake.url, public_url="http://console.example")).start()
    await seed_model(gw, upstream)
    clients: list[WebClient] = []
    yield gw, fake, clients
    for c in clients:
        await c.close()
    await gw.stop()
    await fake.stop()


async def test_pay_by_card_through_stripe_checkout(paying):
    gw, fake, clients = paying
    c = WebClient(gw.url)
    clients.append(c)
    await signed_up(c, "card@example.com")
    acc = (await me(c))["account_id"]
    status, _, html = await c.get("/console/topup")
    assert "Pay by card" in html and all(f'value="{p}"' in html for p in (10, 20, 50, 100))
    assert (await c.post("/console/topup/stripe", {"amount": "20", "wallet": "tasks"}, csrf=False))[0] == 403
    status, headers, _ = await c.post("/console/topup/stripe", {"amount": "20", "amount_custom": "", "wallet": "tasks"})
    assert status == 303 and headers["location"].startswith("https://checkout.stripe.test/c/pay/cs_test_")
    [req] = fake.requests
    assert req["form"]["line_items[0][price_data][unit_amount]"] == "2000"
    assert req["form"]["metadata[account_id]"] == str(acc) and req["form"]["metadata[wallet]"] == "tasks"
    assert req["form"]["success_url"].startswith("http://console.example/console/topup?paid=")
    data = await page_json(c, "/console/topup")
    [t] = data["topups"]
    assert (t["method"], t["amount_usd"], t["wallet"], t["status"]) == ("Card (Stripe)", "20.00", "tasks", "pending")
    # back from Stripe: a note, no money yet
    _, _, html = await c.get(f"/console/topup?paid={t['id']}")
    assert "is being confirmed" in html and 'id="balance-tasks">$0.00' in html
    # Stripe's webhook credits it
    session = fake.sessions[headers["location"].rsplit("/", 1)[1]]
    payload = json.dumps({"id": "evt_page", "type": "checkout.session.completed",
                          "data": {"object": {**session, "payment_status": "paid", "status": "complete"}}}).encode()
    sig = stripe_sdk.WebhookSignature.generate_signature_header(payload.decode(), SECRET, int(time.time()))
    status, _, _ = await gw.raw("POST", "/webhooks/stripe", data=payload, headers={"Stripe-Signature": sig})
    assert status == 200
    data = await page_json(c, "/console/topup")
    assert data["balances_usd"] == {"chat": "0.00", "tasks": "20.00"} and data["topups"][0]["status"] == "paid"
    # a custom amount, and the range
    status, headers, _ = await c.post("/console/topup/stripe", {"amount": "10", "amount_custom": "7.25",
                                                                "wallet": "chat"})
    assert status == 303 and fake.requests[-1]["form"]["line_items[0][price_data][unit_amount]"] == "725"
    for bad in ("4.99", "1000.01", "1.234", "lots"):
        status, _, html = await c.post("/console/topup/stripe", {"amount_custom": bad, "wallet": "chat"})
        assert status == 400 and "amount_usd must be" in html
    status, _, html = await c.post("/console/topup/stripe", {"amount": "10", "wallet": "gold"})
    assert status == 400
    fake.fail = True
    status, _, html = await c.post("/console/topup/stripe", {"amount": "10", "wallet": "chat"})
    assert status == 502 and "nothing was charged" in html and fake.url not in html
    statuses = [t["status"] for t in (await page_json(c, "/console/topup"))["topups"]]
    assert statuses == ["failed", "pending", "paid"]
    assert await books(gw) == []


async def test_card_payments_are_off_without_stripe(console, web):
    c = web()
    await signed_up(c, "nocard@example.com")
    status, _, _ = await c.post("/console/topup/stripe", {"amount": "10", "wallet": "chat"})
    assert status == 404


async def test_usage_page_filters_pages_charts_and_csv(console, web):
    c = web()
    await signed_up(c, "calls@example.com")
    acc = (await me(c))["account_id"]
    await console.admin("POST", f"/admin/accounts/{acc}/credits", {"amount_usd": "5.00"}, expect=201)
    key_a, key_b = await user_key(console, c, "alpha"), await user_key(console, c, "beta")
    ids = []
    for i in range(53):
        client = console.client(key_a if i % 2 == 0 else key_b)
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-5.5", messages=[{"role": "user", "content": f"call {i}"}], max_tokens=20)
        ids.append(raw.headers["x-request-id"])
    # the other user's calls never show
    d = web()
    await signed_up(d, "stranger@example.com")
    other = (await me(d))["account_id"]
    await console.admin("POST", f"/admin/accounts/{other}/credits", {"amount_usd": "1.00"}, expect=201)
    stranger_key = await user_key(console, d, "theirs")
    await console.client(stranger_key).chat.completions.create(model="gpt-5.5",
                                                               messages=[{"role": "user", "content": "x"}])

    status, _, html = await c.get("/console/usage")
    assert status == 200 and html.count("<svg") == 2 and ids[-1] in html
    data = await page_json(c, "/console/usage")
    assert [r["request_id"] for r in data["rows"]] == ids[::-1][:50]
    admin_usage = {r["request_id"]: r for r in await console.usage(acc)}
    for r in data["rows"]:
        a = admin_usage[r["request_id"]]
        assert (r["cost_usd"], r["prompt_tokens"], r["completion_tokens"], r["status"]) == (
            a["cost_usd"], a["prompt_tokens"], a["completion_tokens"], "ok")
    assert data["next"] and data["daily"][-1]["requests"] == 53 and len(data["daily"]) == 30
    older = await page_json(c, data["next"])
    assert [r["request_id"] for r in older["rows"]] == ids[::-1][50:] and older["next"] is None
    keys = {k["name"]: k["id"] for k in data["keys"]}
    assert set(keys) == {"alpha", "beta"}
    only_b = await page_json(c, f"/console/usage?key={keys['beta']}")
    assert [r["request_id"] for r in only_b["rows"]] == ids[1::2][::-1]
    assert {r["key"] for r in only_b["rows"]} == {"beta"}
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert len((await page_json(c, f"/console/usage?from={today}&to={today}"))["rows"]) == 50
    assert (await page_json(c, "/console/usage?to=2001-01-01"))["rows"] == []
    assert (await page_json(c, "/console/usage?model=nope"))["rows"] == []
    theirs = await page_json(d, "/console/usage")
    assert len(theirs["rows"]) == 1 and theirs["rows"][0]["request_id"] not in ids
    bad = await page_json(c, "/console/usage?from=yesterday&key=99999")  # malformed or foreign: ignored
    assert bad["ignored"] == ["from", "key"] and len(bad["rows"]) == 50

    status, headers, body = await c.get(f"/console/usage.csv?key={keys['alpha']}")
    assert status == 200 and headers["content-type"] == "text/csv; charset=utf-8"
    assert headers["content-disposition"].startswith('attachment; filename="usage-')
    lines = list(csv.reader(io.StringIO(body)))
    assert lines[0][:3] == ["time", "request_id", "key"]
    assert [r[1] for r in lines[1:]] == ids[0::2][::-1]
    assert all(r[9] == admin_usage[r[1]]["cost_usd"] for r in lines[1:])
    status, _, body = await c.get("/console/usage.csv")
    assert len(body.strip().splitlines()) == 54
    status, headers, _ = await WebClient(console.url).get("/console/usage.csv")
    assert status == 303 and headers["location"].startswith("/login")

    # billing: both wallets' ledger with running balances
    bill = await page_json(c, "/console/billing")
    entries = bill["entries"]
    assert entries[0]["balance_after_usd"] == bill["balances_usd"]["chat"] and len(entries) == 100
    assert {e["kind"] for e in entries} == {"hold", "release", "charge"}
    older = await page_json(c, bill["next"])
    assert older["next"] is None and len(older["entries"]) == 53 * 3 + 1 - 100
    assert older["entries"][0]["id"] < entries[-1]["id"]
    assert older["entries"][-1]["kind"] == "credit" and older["entries"][-1]["balance_after_usd"] == "5.00"
    assert (await page_json(c, "/console/billing?wallet=tasks"))["entries"] == []
    assert await books(console) == []


async def test_billing_shows_top_ups_of_both_wallets(console, web):
    c = web()
    await signed_up(c, "ledger@example.com")
    for amount, wallet in (("3.00", "chat"), ("4.50", "tasks")):
        await c.post("/console/topup/redeem", {"code": await mint(console, amount, wallet)})
    status, _, html = await c.get("/console/billing")
    assert status == 200 and html.count("top-up: redemption code") == 2
    bill = await page_json(c, "/console/billing")
    assert [(e["wallet"], e["amount_usd"], e["balance_after_usd"]) for e in bill["entries"]] == [
        ("tasks", "4.50", "4.50"), ("chat", "3.00", "3.00")]


# --- in a real browser ------------------------------------------------------------------------

def _browser_redeem(browser, base: str, email: str, code: str) -> dict:
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone's width
    page.goto(base + "/signup")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/console")
    page.click("nav >> text=Top up")
    before = page.inner_text("#balance-chat")
    page.fill("input[name=code]", code)
    page.click("#redeem-form button[type=submit]")
    page.wait_for_url("**/console/topup?redeemed=*")
    out = {"before": before, "after": page.inner_text("#balance-chat"),
           "flash": page.inner_text("p.flash"), "status": page.inner_text("#topups tbody tr td:last-child")}
    page.fill("input[name=code]", code)
    page.click("#redeem-form button[type=submit]")
    out["again"] = page.inner_text("#redeem-error")
    out["after_again"] = page.inner_text("#balance-chat")
    page.click("nav >> text=Billing")
    out["billing"] = page.inner_text("#statement")
    page.close()
    return out


def _browser_usage(browser, base: str, email: str, request_id: str) -> dict:
    page = browser.new_page()
    page.goto(base + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", "correct horse")
    page.click("button[type=submit]")
    page.wait_for_url(base + "/console")
    page.click("nav >> text=Usage")
    row = page.locator(f'tr[data-request-id="{request_id}"]')
    out = {"row": row.inner_text(), "charts": page.locator("figure.chart svg").count()}
    with page.expect_download() as info:
        page.click("#usage-csv")
    out["csv"] = open(info.value.path()).read()
    page.close()
    return out


async def test_in_a_browser_redeem_a_code_and_find_a_real_call(console, browser):
    code = await mint(console, "10.00")
    seen = await browser.run(_browser_redeem, console.url, "browser@example.com", code)
    assert (seen["before"], seen["after"]) == ("$0.00", "$10.00")
    assert "10.00 USD added to your chat balance." in seen["flash"] and seen["status"] == "paid"
    assert "already been redeemed" in seen["again"] and seen["after_again"] == "$10.00"
    assert "top-up: redemption code" in seen["billing"] and "10.00" in seen["billing"]
    # a real call with the openai SDK on a key of this user's account
    c = WebClient(console.url)
    try:
        assert (await c.login("browser@example.com"))[0] == 303
        await c.get("/console/keys")
        key = await user_key(console, c)
    finally:
        await c.close()
    raw = await console.client(key).chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hello from the browser test"}], max_tokens=30)
    rid = raw.headers["x-request-id"]
    usage = raw.parse().usage
    seen = await browser.run(_browser_usage, console.url, "browser@example.com", rid)
    assert "gpt-5.5" in seen["row"] and str(usage.prompt_tokens) in seen["row"] and seen["charts"] == 2
    lines = list(csv.reader(io.StringIO(seen["csv"])))
    [line] = [r for r in lines[1:] if r[1] == rid]
    assert (line[4], line[5], int(line[6]), int(line[7])) == ("gpt-5.5", "ok", usage.prompt_tokens,
                                                             usage.completion_tokens)
    assert line[9] in seen["row"]  # the same cost on the page and in the CSV
    assert await books(console) == []


async def test_pages_with_10000_usage_rows(console, web):
    """The pages and the CSV over 10,000 rows (their speed: bench/money.py)."""
    from sqlalchemy import insert, text

    from reapi.store import schema

    c = web()
    await signed_up(c, "heavy@example.com")
    acc = (await me(c))["account_id"]
    await user_key(console, c, "bulk")
    key_id = (await page_json(c, "/console/keys"))["keys"][0]["id"]
    now = int(time.time() * 1000)
    rows, entries = [], []
    for i in range(10_000):
        ts = now - i * 250_000  # about 29 days back
        rows.append({"request_id": f"bulk_{i:05d}", "account_id": acc, "key_id": key_id,
                     "model": ("gpt-5.5", "claude-x")[i % 2], "group": "default", "channel_id": 1, "stream": False,
                     "status": "ok", "prompt_tokens": 10, "completion_tokens": 20, "cached_tokens": 0,
                     "cache_write_tokens": 0, "hold_nano": 500, "cost_nano": 300, "uncollected_nano": 0,
                     "error_code": None, "created_at": ts, "settled_at": ts})
        entries += [{"account_id": acc, "kind": k, "amount_nano": a, "request_id": f"bulk_{i:05d}", "note": None,
                     "created_at": ts, "wallet": "chat"}
                    for k, a in (("hold", -500), ("release", 500), ("charge", -300))]
    entries.insert(0, {"account_id": acc, "kind": "credit", "amount_nano": 10**10, "request_id": None, "note": "seed",
                       "created_at": now - 40 * 86_400_000, "wallet": "chat"})
    async with console.gw.engine.begin() as conn:
        for i in range(0, len(rows), 2000):
            await conn.execute(insert(schema.usage), rows[i:i + 2000])
        for i in range(0, len(entries), 5000):
            await conn.execute(insert(schema.ledger), entries[i:i + 5000])
        await conn.execute(text(f"UPDATE wallets SET balance_nano = {10**10 - 3_000_000} WHERE account_id = {acc} "
                                "AND wallet = 'chat'"))
    assert await books(console) == []
    data = await page_json(c, "/console/usage")
    assert len(data["rows"]) == 50 and data["daily"][-1]["requests"] > 0
    older = await page_json(c, data["next"])
    assert older["rows"][0]["created_at"] <= data["rows"][-1]["created_at"]
    assert len((await page_json(c, f"/console/usage?model=claude-x&key={key_id}"))["rows"]) == 50
    bill = await page_json(c, "/console/billing")
    assert bill["entries"][0]["balance_after_usd"] == bill["balances_usd"]["chat"] == "9.997"
    status, _, body = await c.get("/console/usage.csv")
    assert status == 200 and len(body.splitlines()) == 10_001
