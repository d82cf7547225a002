"""The operator console over real HTTP and in Chromium: an admin signs in, adds a channel, sets a price
(with its catalog fields), credits an account (a ledger credit, `ledger verify` green), revokes a key,
finds a call by request id; no page shows an upstream key; a customer gets 403 and a guest is sent
to sign in; every POST needs its CSRF token. SQLite and PostgreSQL."""
from __future__ import annotations

import re
from html.parser import HTMLParser

from sqlalchemy import text

from tests.harness import UPSTREAM_KEY

ADMIN_EMAIL, PASSWORD = "ops@example.com", "correct horse"
PAGES = ("/admin/console", "/admin/console/channels", "/admin/console/models", "/admin/console/accounts",
         "/admin/console/usage", "/admin/console/accounts/1/keys", "/admin/console/channels/1",
         "/admin/console/accounts/1", "/admin/console/codes?status=unused")


class Labels(HTMLParser):
    """Form controls outside any <label> (a11y basics: every input has one)."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.bare: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "label":
            self.depth += 1
        elif tag in ("input", "select", "textarea") and a.get("type") != "hidden" and not self.depth \
                and not a.get("aria-label"):
            self.bare.append(a.get("name", tag))

    def handle_endtag(self, tag):
        if tag == "label":
            self.depth -= 1


def unlabelled(html: str) -> list[str]:
    p = Labels()
    p.feed(html)
    return p.bare


async def make_admin(console) -> None:
    await console.admin("POST", "/admin/users", {"email": ADMIN_EMAIL, "password": PASSWORD, "admin": True},
                        expect=201)


async def test_the_operator_console_over_http(console, web, upstream):
    await make_admin(console)
    customer = web()
    await customer.signup("customer@example.com")
    guest = web()
    for path in PAGES:
        st, _, _ = await customer.get(path)
        assert st == 403, path
        st, h, _ = await guest.get(path)
        assert st in (302, 303) and h["location"].startswith("/login?next="), path
    st, _, _ = await customer.post("/admin/console/accounts/1/credit", {"amount_usd": "5"})
    assert st == 403
    ops = web()
    st, _, _ = await ops.login(ADMIN_EMAIL)
    assert st in (302, 303)
    for path in PAGES:
        st, _, body = await ops.get(path)
        assert st == 200, (path, body[:300])
        assert UPSTREAM_KEY not in body
        assert unlabelled(body) == [], path
    # a POST without its token changes nothing
    st, _, _ = await ops.post("/admin/console/channels", {"name": "x", "csrf_token": "wrong"})
    assert st == 403
    st, h, _ = await ops.post("/admin/console/channels", {
        "name": "second", "type": "openai", "base_url": upstream.url + "/v1", "api_key": "sk-upstream-secret-9",
        "models": "gpt-5.5", "groups": "default", "priority": "0", "weight": "1"})
    assert st in (302, 303), h
    st, _, body = await ops.get("/admin/console/channels")
    assert "second" in body and "sk-upstream-secret-9" not in body and UPSTREAM_KEY not in body
    # a bad value comes back on the form, naming the field, without the key
    st, _, body = await ops.post("/admin/console/channels", {
        "name": "bad", "type": "openai", "base_url": "ftp://nowhere", "api_key": "sk-never-echoed", "models": "m"})
    assert st == 400 and "base_url" in body and "sk-never-echoed" not in body
    # disable and probe
    cid = max(c["id"] for c in (await console.admin("GET", "/admin/channels"))["data"])
    st, _, _ = await ops.post(f"/admin/console/channels/{cid}/enabled", {"enabled": "false"})
    assert st in (302, 303)
    assert (await console.admin("GET", f"/admin/channels/{cid}"))["enabled"] is False
    st, _, body = await ops.post("/admin/console/channels/1/test", {})
    assert st == 200 and 'id="probe-result"' in body and "answered" in body
    st, _, _ = await ops.post(f"/admin/console/channels/{cid}/delete", {})
    assert st in (302, 303)
    assert cid not in [c["id"] for c in (await console.admin("GET", "/admin/channels"))["data"]]
    st, _, _ = await ops.post(f"/admin/console/channels/{cid}/delete", {})
    assert st == 404
    # a price with its catalog fields, through ops.set_price
    st, _, _ = await ops.post("/admin/console/models", {
        "model": "gpt-5.4", "input": "1.25", "output": "10", "cached_input": "0.125", "context_window": "400000",
        "max_output": "128000", "lc_threshold": "272000", "lc_input": "2", "lc_output": "1.5",
        "description": "Smaller and cheaper.", "category": "chat", "tags": "cheap, fast", "hidden": "on"})
    assert st in (302, 303)
    row = next(m for m in (await console.admin("GET", "/admin/models"))["data"] if m["model"] == "gpt-5.4")
    assert (row["input_usd_per_mtok"], row["long_context"]["threshold_tokens"], row["description"],
            row["tags"], row["hidden"]) == ("1.25", 272000, "Smaller and cheaper.", ["cheap", "fast"], True)
    st, _, body = await ops.get("/admin/console/models?model=gpt-5.4")
    assert 'value="272000"' in body and "Smaller and cheaper." in body
    st, _, body = await ops.post("/admin/console/models", {"model": "gpt-5.4", "input": "-1", "output": "1"})
    assert st == 400 and 'id="form-error"' in body and "input_usd_per_mtok" in body
    # credit the customer's account: a ledger credit with its note
    st, _, body = await ops.get("/admin/console/accounts?q=customer@")
    ids = re.findall(r'id="account-(\d+)"', body)
    assert len(ids) == 1
    aid = int(ids[0])
    st, _, _ = await ops.post(f"/admin/console/accounts/{aid}/credit", {"amount_usd": "12.50", "wallet": "chat",
                                                                       "note": "goodwill"})
    assert st in (302, 303)
    assert (await console.admin("GET", f"/admin/accounts/{aid}"))["balances"]["chat"] == "12.50"
    ledger = (await console.admin("GET", f"/admin/accounts/{aid}/ledger"))["data"]
    assert ledger[0]["kind"] == "credit" and ledger[0]["note"] == "goodwill" and ledger[0]["amount_usd"] == "12.50"
    st, _, body = await ops.post(f"/admin/console/accounts/{aid}/credit", {"amount_usd": "-5"})
    assert st == 400
    # a key: call with it, find the call by request id, revoke it from the page
    key = await console.admin("POST", f"/admin/accounts/{aid}/keys", {"name": "k"}, expect=201)
    client = console.client(key["key"])
    raw = await client.chat.completions.with_raw_response.create(
        model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    rid = raw.headers["x-request-id"]
    st, _, body = await ops.get(f"/admin/console/usage?request_id={rid}")
    assert st == 200 and rid in body and "gpt-5.5" in body
    st, _, body = await ops.get(f"/admin/console/accounts/{aid}/keys")
    assert f'id="key-{key["id"]}"' in body and key["key"] not in body
    st, _, _ = await ops.post(f"/admin/console/keys/{key['id']}/revoke", {})
    assert st in (302, 303)
    st, _, _ = await console.raw("POST", "/v1/chat/completions", json={"model": "gpt-5.5", "messages": [
        {"role": "user", "content": "hi"}]}, headers={"Authorization": f"Bearer {key['key']}"})
    assert st == 401
    st, _, body = await ops.get("/admin/console")
    assert st == 200 and "gpt-5.5" in body
    assert await console.verify() == []
    async with console.gw.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM ledger WHERE note = 'goodwill'"))).scalar() == 1


def operator_journey(b, base: str, upstream_url: str) -> dict:
    ctx = b.new_context()
    page = ctx.new_page()
    seen = {}
    try:
        page.goto(base + "/login")
        page.get_by_label("E-mail").fill(ADMIN_EMAIL)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/console")
        page.goto(base + "/admin/console/channels")
        page.get_by_label("Name", exact=True).fill("browser-channel")
        page.get_by_label("Base URL").fill(upstream_url + "/v1")
        page.get_by_label("Upstream key").fill("sk-browser-upstream")
        page.get_by_label("Models", exact=True).fill("gpt-5.5")
        page.get_by_role("button", name="Add channel").click()
        page.wait_for_url(base + "/admin/console/channels?done=added")
        seen["channels"] = page.locator("#channels").inner_text()
        seen["channels_html"] = page.content()
        page.goto(base + "/admin/console/models?model=gpt-5.5")
        page.get_by_label("Input USD per 1M", exact=True).fill("4.00")
        page.get_by_label("Description").fill("Set from the browser.")
        page.get_by_role("button", name="Save price").click()
        page.wait_for_url(base + "/admin/console/models?done=saved")
        seen["models"] = page.locator("#models").inner_text()
        page.goto(base + "/admin/console/accounts?q=customer")
        page.get_by_label(re.compile("Amount USD for account")).first.fill("3.25")
        page.get_by_label("Note").first.fill("browser credit")
        page.get_by_role("button", name=re.compile("Credit account")).first.click()
        page.wait_for_url(re.compile(r".*/admin/console/accounts\?credited=\d+"))
        seen["flash"] = page.locator(".flash.ok").inner_text()
        page.goto(base + "/admin/console")
        seen["overview"] = page.locator("h1").inner_text()
    finally:
        ctx.close()
    return seen


def customer_is_refused(b, base: str) -> int:
    ctx = b.new_context()
    page = ctx.new_page()
    try:
        page.goto(base + "/login")
        page.get_by_label("E-mail").fill("customer@example.com")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/console")
        return page.goto(base + "/admin/console/channels").status
    finally:
        ctx.close()


async def test_the_operator_console_in_chromium(browser, console, web, upstream):
    await make_admin(console)
    customer = web()
    await customer.signup("customer@example.com")
    seen = await browser.run(operator_journey, console.url, upstream.url)
    assert "browser-channel" in seen["channels"] and "sk-browser-upstream" not in seen["channels_html"]
    assert "$4.00" in seen["models"]
    assert "Credited account" in seen["flash"]
    assert seen["overview"] == "Overview"
    _, _, body = await console.raw("GET", "/pricing")
    assert b'"input_usd_per_mtok":"4.00"' in body
    _, _, body = await console.raw("GET", "/docs/gpt-5.5", headers={"Accept": "text/html"})
    assert b"Set from the browser." in body
    assert await browser.run(customer_is_refused, console.url) == 403
    assert await console.verify() == []
