"""The customer journey in a real browser (Playwright driving Debian's Chromium) on a fresh
gateway: sign up, sign in, create a chat key, copy it from the page, call the API with the openai
SDK, revoke the key from the page and see the API refuse it, sign out and see the session gone.
On SQLite and PostgreSQL; `ledger verify` is green at the end."""
from __future__ import annotations

import openai
import pytest
from sqlalchemy import text

EMAIL, PASSWORD = "journey@example.com", "a long passphrase"


def sign_up_and_make_a_key(b, base: str, state: dict) -> str:
    ctx = b.new_context(viewport={"width": 390, "height": 844})  # a phone
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
    page = ctx.new_page()
    state.update(ctx=ctx, page=page)
    page.goto(base + "/signup")
    page.get_by_label("E-mail").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(base + "/console")
    assert page.locator("#balance-chat").inner_text() == "$0.00"
    # sign out and back in: the sign-in form works too
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(base + "/login")
    page.goto(base + "/console/keys")
    page.wait_for_url(base + "/login?next=/console/keys")
    page.get_by_label("E-mail").fill(EMAIL)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/console/keys")
    page.get_by_label("Name").fill("browser key")
    page.get_by_label("Workspace").select_option("chat")
    page.get_by_role("button", name="Create key").click()
    key = page.locator("#new-key-value").inner_text().strip()
    page.get_by_role("button", name="Copy key").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key
    return key


def dashboard_after_the_call(b, base: str, state: dict) -> str:
    page = state["page"]
    page.goto(base + "/console")
    assert page.locator("#spend-chart svg rect").count() >= 1  # the call's spend, drawn
    for path in ("/console", "/console/keys", "/console/account"):  # nothing wider than the phone
        page.goto(base + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
    page.goto(base + "/console")
    return page.locator("#requests-24h").inner_text()


def revoke_the_key(b, base: str, state: dict) -> str:
    page = state["page"]
    page.goto(base + "/console/keys")
    page.get_by_role("button", name="Revoke key browser key").click()
    return page.locator(".flash.ok").inner_text()


def sign_out(b, base: str, state: dict) -> str:
    page = state["page"]
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(base + "/login")
    page.goto(base + "/console")
    url = page.url
    cookies = [c["name"] for c in state["ctx"].cookies()]
    state["ctx"].close()
    return url, cookies


async def test_the_customer_journey_in_chromium(browser, console):
    state: dict = {}
    key = await browser.run(sign_up_and_make_a_key, console.url, state)
    assert key.startswith("sk-")
    users = (await console.admin("GET", "/admin/users"))["data"]
    account_id = users[0]["account_id"]
    await console.admin("POST", f"/admin/accounts/{account_id}/credits", {"amount_usd": "3.00"}, expect=201)

    client = console.client(key)
    reply = await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content and reply.usage.total_tokens > 0
    assert await browser.run(dashboard_after_the_call, console.url, state) == "1"

    assert "revoked" in await browser.run(revoke_the_key, console.url, state)
    with pytest.raises(openai.AuthenticationError) as err:
        await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "again"}])
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"

    async with console.gw.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM sessions"))).scalar() == 1
    url, cookies = await browser.run(sign_out, console.url, state)
    assert url == console.url + "/login?next=/console" and "reapi_session" not in cookies
    async with console.gw.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM sessions"))).scalar() == 0
    assert await console.verify() == []
