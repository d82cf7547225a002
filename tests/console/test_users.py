"""Sign-up, sign-in, sign-out, throttles, passwords and e-mailed links, on real gateways (SQLite
and PostgreSQL), with a real SMTP server (aiosmtpd) started by the tests."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from reapi.operations.users import BAD_CREDENTIALS, LOGIN_FAILURES
from tests.console.conftest import WebClient, console_settings, seed_model
from tests.harness import Gateway


async def scalar(gw: Gateway, sql: str, **params):
    async with gw.gw.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


@pytest.fixture
async def make_gateway(store_url, upstream):
    """A gateway with settings of the test's choosing, on the test's store."""
    started: list[Gateway] = []
    clients: list[WebClient] = []

    async def make(**kw) -> tuple[Gateway, callable]:
        gw = await Gateway(console_settings(store_url, **kw)).start()
        started.append(gw)
        await seed_model(gw, upstream)

        def client() -> WebClient:
            c = WebClient(gw.url)
            clients.append(c)
            return c

        return gw, client

    yield make
    for c in clients:
        await c.close()
    for gw in started:
        await gw.stop()


async def test_sign_up_makes_a_user_with_an_account_both_wallets_and_the_signup_credit(make_gateway):
    gw, client = await make_gateway(signup_credit_usd="2.50")
    c = client()
    status, headers, _ = await c.signup("  New@Example.COM ", "correct horse")
    assert status == 303 and headers["location"] == "/console"
    user = await gw.admin("GET", "/admin/users", expect=200)
    assert [(u["email"], u["admin"], u["verified"]) for u in user["data"]] == [("new@example.com", False, True)]
    account_id = user["data"][0]["account_id"]
    acc = await gw.admin("GET", f"/admin/accounts/{account_id}", expect=200)
    assert acc["balances"] == {"chat": "2.50", "tasks": "0.00"}
    ledger = await gw.admin("GET", f"/admin/accounts/{account_id}/ledger", expect=200)
    assert [(e["kind"], e["amount_usd"], e["wallet"]) for e in ledger["data"]] == [("credit", "2.50", "chat")]
    stored = await scalar(gw, "SELECT password_hash FROM users")
    assert stored.startswith("$argon2id$v=19$") and "correct horse" not in stored
    _, _, html = await c.get("/console")
    assert 'id="balance-chat">$2.50<' in html
    assert await gw.verify() == []


async def test_sign_up_refusals(make_gateway):
    gw, client = await make_gateway()
    c = client()
    status, _, body = await c.signup("short@example.com", "1234567")
    assert status == 400 and "at least 8 characters" in body
    status, _, body = await c.signup("not-an-email", "correct horse")
    assert status == 400 and "valid e-mail" in body
    assert (await c.signup("twice@example.com"))[0] == 303
    other = client()
    status, _, body = await other.signup("TWICE@example.com")
    assert status == 409 and "exists already" in body
    assert await scalar(gw, "SELECT count(*) FROM users") == 1
    assert await scalar(gw, "SELECT count(*) FROM accounts") == 1  # a refused sign-up leaves nothing behind


async def test_sign_ups_are_throttled_per_client_address(make_gateway):
    gw, client = await make_gateway(signups_per_hour=2)
    for i in range(2):
        assert (await client().signup(f"u{i}@example.com"))[0] == 303
    status, headers, body = await client().signup("u2@example.com")
    assert status == 429 and "Too many sign-ups" in body
    assert 3500 <= int(headers["retry-after"]) <= 3600
    assert await scalar(gw, "SELECT count(*) FROM users") == 2


async def test_sign_ups_refused_for_a_registered_email_count_toward_the_limit(make_gateway):
    """So the sign-up form cannot test many addresses for accounts."""
    gw, client = await make_gateway(signups_per_hour=3)
    assert (await client().signup("taken@example.com"))[0] == 303
    for _ in range(2):
        assert (await client().signup("taken@example.com"))[0] == 409
    assert (await client().signup("fresh@example.com"))[0] == 429


async def test_closed_sign_up_only_operators_create_users(make_gateway):
    gw, client = await make_gateway(signup="closed")
    c = client()
    status, _, body = await c.get("/signup")
    assert status == 200 and "Sign-up is closed" in body and 'name="password"' not in body
    status, _, body = await c.post("/signup", {"email": "x@example.com", "password": "correct horse"})
    assert status == 403 and "closed" in body
    made = await gw.admin("POST", "/admin/users", {"email": "op@example.com", "admin": True}, expect=201)
    assert made["admin"] is True and len(made["password"]) >= 12  # generated, returned once
    assert (await c.login("op@example.com", made["password"]))[0] == 303
    assert (await c.get("/console"))[0] == 200
    await gw.admin("POST", "/admin/users", {"email": "op@example.com", "password": "another one"}, expect=409)
    err = await gw.admin("POST", "/admin/users", {"email": "p@example.com", "password": "short"}, expect=400)
    assert err["error"]["param"] == "password"


async def test_unknown_email_and_wrong_password_get_the_same_answer(make_gateway):
    gw, client = await make_gateway()
    await client().signup("known@example.com")
    answers = []
    for email, password in (("known@example.com", "wrong password"), ("nobody@example.com", "wrong password")):
        c = client()
        status, _, body = await c.login(email, password)
        error = body.split('role="alert">', 1)[1].split("<", 1)[0]
        answers.append((status, error))
    assert answers[0] == answers[1] == (401, BAD_CREDENTIALS)


async def test_failed_sign_ins_are_limited_per_email_and_per_address(make_gateway):
    gw, client = await make_gateway()
    await client().signup("victim@example.com")
    c = client()
    for _ in range(LOGIN_FAILURES):
        assert (await c.login("victim@example.com", "guess guess"))[0] == 401
    status, headers, body = await c.login("victim@example.com", "correct horse")  # even the right one now
    assert status == 429 and "Too many failed sign-ins" in body
    assert 1 <= int(headers["retry-after"]) <= 600
    # the same for an unknown e-mail from this address: the address is limited too, and says nothing
    status, _, _ = await c.login("nobody@example.com", "whatever1")
    assert status == 429
    async with gw.gw.engine.begin() as conn:  # ten minutes later
        await conn.execute(text("UPDATE auth_events SET created_at = created_at - 600001"))
    assert (await c.login("victim@example.com", "correct horse"))[0] == 303


async def test_per_address_limit_across_emails(make_gateway):
    gw, client = await make_gateway()
    await client().signup("a@example.com")
    c = client()
    for i in range(LOGIN_FAILURES):
        assert (await c.login(f"spray{i}@example.com", "password1"))[0] == 401
    assert (await c.login("a@example.com", "correct horse"))[0] == 429


async def test_sign_out_ends_the_session_row(make_gateway):
    gw, client = await make_gateway()
    c = client()
    await c.signup("out@example.com")
    assert await scalar(gw, "SELECT count(*) FROM sessions") == 1
    await c.get("/console")
    status, headers, _ = await c.post("/logout", {})
    assert status == 303 and headers["location"] == "/login"
    assert "reapi_session=;" in headers["set-cookie"] and "Max-Age=0" in headers["set-cookie"]
    assert await scalar(gw, "SELECT count(*) FROM sessions") == 0
    assert (await c.get("/console"))[0] == 303
    # after sign-in only a console path: never another site
    for nxt, where in (("/console/keys", "/console/keys"), ("https://evil.example/", "/console"),
                       ("//evil.example/console", "/console"), ("/console//evil.example", "/console")):
        fresh = client()
        await fresh.get("/login")
        status, headers, _ = await fresh.post("/login", {"email": "out@example.com", "password": "correct horse",
                                                         "next": nxt})
        assert status == 303 and headers["location"] == where, nxt


async def test_changing_the_password_ends_every_other_session(make_gateway):
    gw, client = await make_gateway()
    here, there = client(), client()
    await here.signup("pw@example.com")
    await there.login("pw@example.com")
    assert await scalar(gw, "SELECT count(*) FROM sessions") == 2
    status, _, body = await here.get("/console/account")
    uid_account = await scalar(gw, "SELECT account_id FROM users")
    assert f'id="account-id">{uid_account}<' in body
    status, _, body = await here.post("/console/account/password",
                                      {"current_password": "wrong wrong", "new_password": "brand new pw"})
    assert status == 400 and "current password is not right" in body
    status, _, body = await here.post("/console/account/password",
                                      {"current_password": "correct horse", "new_password": "brand new pw"})
    assert status == 200 and "1 other session(s) signed out" in body
    assert (await here.get("/console"))[0] == 200
    assert (await there.get("/console"))[0] == 303
    assert (await client().login("pw@example.com", "correct horse"))[0] == 401
    assert (await client().login("pw@example.com", "brand new pw"))[0] == 303


async def test_password_reset_by_mail_through_a_real_smtp_server(make_gateway, mailbox):
    gw, client = await make_gateway(smtp_url=mailbox.url, public_url="http://console.test")
    signed_in = client()
    await signed_in.signup("reset@example.com")
    c = client()
    status, _, body = await c.get("/password/forgot")
    assert status == 200 and 'name="email"' in body
    for email in ("reset@example.com", "nobody@example.com"):  # the same answer either way
        status, _, body = await c.post("/password/forgot", {"email": email})
        assert status == 200 and "If an account exists for that address" in body
    [msg] = await mailbox.wait(1)
    assert msg["To"] == "reset@example.com" and msg["Subject"] == "Reset your password"
    link = mailbox.link(msg)
    assert link.startswith("http://console.test/password/reset?token=")  # REAPI_PUBLIC_URL, never Host
    parts = urlsplit(link)
    token = parts.query.split("=", 1)[1]
    assert await scalar(gw, "SELECT count(*) FROM user_tokens WHERE token_hash = :t", t=token) == 0  # hashed
    status, _, body = await c.get(f"{parts.path}?{parts.query}")
    assert status == 200 and 'name="token"' in body
    status, _, body = await c.post("/password/reset", {"token": token, "password": "short"})
    assert status == 400
    status, headers, _ = await c.post("/password/reset", {"token": token, "password": "a new password"})
    assert status == 303 and headers["location"] == "/login?reset=1"
    assert (await signed_in.get("/console"))[0] == 303  # the reset ended every session
    assert (await client().login("reset@example.com", "correct horse"))[0] == 401
    assert (await client().login("reset@example.com", "a new password"))[0] == 303
    status, _, body = await c.post("/password/reset", {"token": token, "password": "third password"})
    assert status == 400 and "not valid" in body  # single use
    assert (await c.get(f"{parts.path}?{parts.query}"))[0] == 400
    await c.post("/password/forgot", {"email": "reset@example.com"})  # a link older than an hour is dead too
    await mailbox.wait(2)
    late = urlsplit(mailbox.link(mailbox.messages[1])).query.split("=", 1)[1]
    async with gw.gw.engine.begin() as conn:
        await conn.execute(text("UPDATE user_tokens SET expires_at = 1 WHERE used_at IS NULL"))
    assert (await c.post("/password/reset", {"token": late, "password": "fourth password"}))[0] == 400


async def test_without_smtp_the_page_says_reset_is_unavailable(make_gateway):
    gw, client = await make_gateway()
    c = client()
    status, _, body = await c.get("/password/forgot")
    assert status == 200 and "unavailable" in body and "reapi users set-password" in body
    status, _, body = await c.post("/password/forgot", {"email": "x@example.com"})
    assert status == 503 and "unavailable" in body


async def test_verify_mode_mails_a_link_that_activates_the_account(make_gateway, mailbox):
    gw, client = await make_gateway(signup="verify", smtp_url=mailbox.url, public_url="http://console.test")
    c = client()
    status, _, body = await c.signup("verify@example.com")
    assert status == 200 and "We sent a link" in body
    assert await scalar(gw, "SELECT count(*) FROM sessions") == 0
    status, _, body = await c.login("verify@example.com")
    assert status == 403 and "Confirm your e-mail" in body
    [msg] = await mailbox.wait(1)
    parts = urlsplit(mailbox.link(msg))
    assert parts.path == "/signup/verify"
    status, _, body = await c.get(f"{parts.path}?{parts.query}")
    assert status == 200 and "confirmed" in body
    assert (await c.get(f"{parts.path}?{parts.query}"))[0] == 400  # once
    assert (await c.login("verify@example.com"))[0] == 303


async def test_verify_mode_without_mail_refuses_sign_up(make_gateway):
    gw, client = await make_gateway(signup="verify")
    status, _, body = await client().signup("v@example.com")
    assert status == 403 and "cannot send mail" in body


def test_cli_creates_users_and_sets_passwords(tmp_path):
    from click.testing import CliRunner

    from reapi.cli import main

    runner = CliRunner(env={"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/u.db"})
    assert runner.invoke(main, ["migrate"]).exit_code == 0
    r = runner.invoke(main, ["users", "create", "Ops@Example.com", "--admin"])
    assert r.exit_code == 0, r.output
    assert "ops@example.com" in r.output and "admin" in r.output and "password: " in r.output
    r = runner.invoke(main, ["users", "create", "ops@example.com", "--password", "12345678"])
    assert r.exit_code == 1 and "exists already" in r.output and "Traceback" not in r.output
    r = runner.invoke(main, ["users", "create", "b@example.com", "--password", "short"])
    assert r.exit_code == 2 and "at least 8" in r.output
    r = runner.invoke(main, ["users", "set-password", "ops@example.com"], input="a new password\na new password\n")
    assert r.exit_code == 0 and "password set" in r.output, r.output
    r = runner.invoke(main, ["users", "set-password", "nobody@example.com", "--password", "whatever1"])
    assert r.exit_code == 1 and "No user" in r.output
