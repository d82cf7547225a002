"""Stripe Checkout top-ups against a fake Stripe API started by the tests, with webhook events signed
with the endpoint's secret and delivered over a real socket to a real gateway on SQLite and
PostgreSQL: one credit per paid session however often (and however concurrently) it is delivered,
nothing for a bad or stale signature, an unpaid session or a mismatched amount; a store failing for
real (a trigger refusing the event's row) answers 500 and a later re-delivery credits once."""
from __future__ import annotations

import asyncio
import time

import orjson
import pytest
import stripe as stripe_sdk
from sqlalchemy import text

from reapi.payments import stripe as topups
from reapi.store import queries
from tests.harness import Gateway, gateway_settings
from tests.payments.fake_stripe import FakeStripe

SECRET = "whsec_test_" + "s3cr3t" * 4
API_KEY = "sk_test_fake_key_123"


async def books(g) -> list[str]:
    """`reapi ledger verify`'s two checks: the books and the top-ups against their credits."""
    from reapi.payments.audit import verify_topups

    async with g.gw.engine.connect() as conn:
        return await g.verify() + await verify_topups(conn)


@pytest.fixture
async def fake():
    f = await FakeStripe().start()
    yield f
    await f.stop()


@pytest.fixture
async def gw(store_url, fake):
    g = await Gateway(gateway_settings(store_url, stripe_secret_key=API_KEY, stripe_webhook_secret=SECRET,
                                       stripe_api_base=fake.url)).start()
    yield g
    await g.stop()


async def account(gw) -> int:
    return (await gw.admin("POST", "/admin/accounts", {"name": "buyer"}, expect=201))["id"]


async def checkout(gw, acc, amount="25.00", wallet="chat") -> topups.Checkout:
    nano = topups.parse_amount(gw.settings, amount)
    return await topups.start_checkout(gw.gw.engine, gw.settings, acc, wallet, nano, "https://console.example")


def event(session: dict, kind="checkout.session.completed", event_id=None, **changes) -> bytes:
    obj = {**session, "status": "complete", "payment_status": "paid", **changes}
    return orjson.dumps({"id": event_id or "evt_" + str(time.time_ns()), "object": "event", "type": kind,
                         "created": int(time.time()), "livemode": False, "data": {"object": obj}})


async def deliver(gw, payload: bytes, *, secret=SECRET, at: int | None = None, header: str | None = None):
    sig = header if header is not None else stripe_sdk.WebhookSignature.generate_signature_header(
        payload.decode(), secret, at if at is not None else int(time.time()))
    status, _, body = await gw.raw("POST", "/webhooks/stripe", data=payload,
                                   headers={"Stripe-Signature": sig, "Content-Type": "application/json"})
    return status, orjson.loads(body)


async def wallets(gw, acc) -> dict:
    async with gw.gw.engine.connect() as conn:
        return await queries.balances(conn, acc)


async def credits(gw) -> int:
    async with gw.gw.engine.connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM ledger WHERE kind = 'credit'"))).scalar()


async def status_of(gw, topup_id) -> str:
    async with gw.gw.engine.connect() as conn:
        return (await conn.execute(text(f"SELECT status FROM topups WHERE id = {topup_id}"))).scalar()


async def test_checkout_session_request_and_one_credit_however_often_delivered(gw, fake):
    acc = await account(gw)
    c = await checkout(gw, acc, "25.50", "tasks")
    assert c.url == f"https://checkout.stripe.test/c/pay/{c.session_id}"
    [req] = fake.requests
    f, h = req["form"], req["headers"]
    assert h["Authorization"] == f"Bearer {API_KEY}" and h["Idempotency-Key"] == f"reapi-topup-{c.topup_id}"
    assert (f["mode"], f["line_items[0][price_data][currency]"], f["line_items[0][price_data][unit_amount]"],
            f["line_items[0][quantity]"]) == ("payment", "usd", "2550", "1")
    assert f["client_reference_id"] == f"reapi-{acc}-{c.topup_id}"
    assert (f["metadata[account_id]"], f["metadata[wallet]"], f["metadata[topup_id]"]) == (str(acc), "tasks",
                                                                                           str(c.topup_id))
    assert f["success_url"] == f"https://console.example/console/topup?paid={c.topup_id}"
    assert f["cancel_url"] == f"https://console.example/console/topup?cancelled={c.topup_id}"
    assert await status_of(gw, c.topup_id) == "pending"

    session = fake.sessions[c.session_id]
    paid = event(session, event_id="evt_first")
    assert await deliver(gw, paid) == (200, {"received": True, "result": "credited"})
    assert await wallets(gw, acc) == {"chat": 0, "tasks": 25_500_000_000}
    assert await deliver(gw, paid) == (200, {"received": True, "result": "duplicate"})  # re-delivered
    again = event(session, "checkout.session.async_payment_succeeded", event_id="evt_second")
    assert await deliver(gw, again) == (200, {"received": True, "result": "duplicate"})  # same session
    assert await wallets(gw, acc) == {"chat": 0, "tasks": 25_500_000_000}
    assert await credits(gw) == 1 and await status_of(gw, c.topup_id) == "paid"
    async with gw.gw.engine.connect() as conn:
        entry = (await conn.execute(text("SELECT request_id, wallet, amount_nano FROM ledger"))).one()
        assert tuple(entry) == (f"topup_{c.topup_id}", "tasks", 25_500_000_000)
        assert tuple((await conn.execute(text("SELECT event_id, session_id, topup_id FROM stripe_events"))).one()) \
            == ("evt_first", c.session_id, c.topup_id)
    assert await books(gw) == []


async def test_concurrent_deliveries_credit_once(gw, fake):
    acc = await account(gw)
    c = await checkout(gw, acc, "10")
    session = fake.sessions[c.session_id]
    same = event(session, event_id="evt_same")
    payloads = [same] * 4 + [event(session, event_id=f"evt_other_{i}") for i in range(4)]
    results = await asyncio.gather(*(deliver(gw, p) for p in payloads))
    assert all(s == 200 for s, _ in results)
    assert sorted(b["result"] for _, b in results).count("credited") == 1
    assert await wallets(gw, acc) == {"chat": 10_000_000_000, "tasks": 0}
    assert await credits(gw) == 1 and await books(gw) == []


async def test_bad_stale_or_missing_signatures_unpaid_and_mismatched_sessions_credit_nothing(gw, fake):
    acc = await account(gw)
    c = await checkout(gw, acc, "5")
    session = fake.sessions[c.session_id]
    paid = event(session)
    now = int(time.time())
    for kw in ({"secret": "whsec_wrong"}, {"at": now - 301}, {"at": now + 400}, {"header": ""},
               {"header": "t=abc,v1=zz"}, {"header": "v1=" + "0" * 64}):
        status, body = await deliver(gw, paid, **kw)
        assert (status, body["result"]) == (400, "refused"), kw
    sig = stripe_sdk.WebhookSignature.generate_signature_header(paid.decode(), SECRET, now)
    tampered = paid.replace(b'"amount_total":500', b'"amount_total":50000')
    assert tampered != paid and (await deliver(gw, tampered, header=sig))[0] == 400  # signature over the raw body
    assert (await deliver(gw, b"not json"))[0] == 400
    assert (await deliver(gw, orjson.dumps({"id": "evt_x", "type": "checkout.session.completed"})))[0] == 400
    assert await deliver(gw, event(session, payment_status="unpaid")) == (200, {"received": True, "result": "ignored"})
    assert await deliver(gw, event(session, "invoice.paid")) == (200, {"received": True, "result": "ignored"})
    assert await deliver(gw, event(session, id="cs_test_unknown")) == (200, {"received": True, "result": "ignored"})
    assert await credits(gw) == 0 and await status_of(gw, c.topup_id) == "pending"
    # within the window: 290 s old is still fine
    assert (await deliver(gw, paid, at=int(time.time()) - 290))[1]["result"] == "credited"
    assert await wallets(gw, acc) == {"chat": 5_000_000_000, "tasks": 0}

    # our row's amount is what counts: an event that disagrees credits nothing
    c2 = await checkout(gw, acc, "20")
    s2 = fake.sessions[c2.session_id]
    assert (await deliver(gw, event(s2, amount_total=2001)))[1]["result"] == "mismatch"
    assert await status_of(gw, c2.topup_id) == "mismatch"
    assert (await deliver(gw, event(s2)))[1]["result"] == "ignored"  # decided: a human looks at it
    c3 = await checkout(gw, acc, "20")
    s3 = fake.sessions[c3.session_id]
    assert (await deliver(gw, event(s3, currency="eur")))[1]["result"] == "mismatch"
    c4 = await checkout(gw, acc, "20")
    assert (await deliver(gw, event(fake.sessions[c4.session_id], metadata={
        "account_id": str(acc + 1), "wallet": "chat", "topup_id": str(c4.topup_id)})))[1]["result"] == "mismatch"
    # an expired session closes its row
    c5 = await checkout(gw, acc, "20")
    assert (await deliver(gw, event(fake.sessions[c5.session_id], "checkout.session.expired")))[0] == 200
    assert await status_of(gw, c5.topup_id) == "expired"
    assert await credits(gw) == 1 and await wallets(gw, acc) == {"chat": 5_000_000_000, "tasks": 0}
    assert await books(gw) == []


async def test_a_store_failing_during_the_credit_answers_500_and_a_redelivery_credits_once(gw, fake, store_url):
    acc = await account(gw)
    c = await checkout(gw, acc, "30")
    paid = event(fake.sessions[c.session_id], event_id="evt_retry")
    sqlite = store_url.startswith("sqlite")
    async with gw.gw.engine.begin() as conn:  # the store refuses the event's row: a real failure, not a mock
        if sqlite:
            await conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON stripe_events "
                                       "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        else:
            await conn.exec_driver_sql("CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN "
                                       "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql")
            await conn.exec_driver_sql("CREATE TRIGGER refuse BEFORE INSERT ON stripe_events "
                                       "FOR EACH ROW EXECUTE FUNCTION refuse()")
    assert await deliver(gw, paid) == (500, {"received": False, "result": "failed"})
    assert await deliver(gw, paid) == (500, {"received": False, "result": "failed"})
    assert await credits(gw) == 0 and await status_of(gw, c.topup_id) == "pending"
    assert await wallets(gw, acc) == {"chat": 0, "tasks": 0}
    async with gw.gw.engine.begin() as conn:
        await conn.exec_driver_sql("DROP TRIGGER refuse" if sqlite else "DROP TRIGGER refuse ON stripe_events")
    assert await deliver(gw, paid) == (200, {"received": True, "result": "credited"})
    assert await deliver(gw, paid) == (200, {"received": True, "result": "duplicate"})
    assert await wallets(gw, acc) == {"chat": 30_000_000_000, "tasks": 0}
    assert await credits(gw) == 1 and await books(gw) == []


async def test_stripe_failing_marks_the_top_up_failed(gw, fake):
    acc = await account(gw)
    fake.fail = True
    with pytest.raises(Exception) as err:
        await checkout(gw, acc, "10")
    assert getattr(err.value, "code", None) == "payment_provider_error" and err.value.status == 502
    assert "127.0.0.1" not in err.value.message and API_KEY not in err.value.message
    assert len(fake.requests) == 3  # the first attempt and the package's 2 retries (same idempotency key)
    assert len({r["headers"]["Idempotency-Key"] for r in fake.requests}) == 1
    async with gw.gw.engine.connect() as conn:
        assert (await conn.execute(text("SELECT status FROM topups"))).scalar() == "failed"


async def test_amounts_are_checked_against_the_range(gw):
    s = gw.settings
    assert topups.parse_amount(s, "5") == 5_000_000_000 and topups.parse_amount(s, "1000.00") == 10**12
    assert topups.parse_amount(s, "12.34") == 12_340_000_000
    for bad in ("4.99", "1000.01", "12.345", "abc", "", "NaN", "1e2", None, 10.5, True):
        with pytest.raises(Exception) as err:
            topups.parse_amount(s, bad)
        assert err.value.status == 400 and err.value.param == "amount_usd", bad
    assert topups.presets(s) == [10, 20, 50, 100]


async def test_webhook_off_without_stripe_settings_and_post_only(sqlite_url):
    g = await Gateway(gateway_settings(sqlite_url)).start()
    try:
        status, headers, _ = await g.raw("POST", "/webhooks/stripe", data=b"{}")
        assert status == 404 and "x-request-id" in headers
    finally:
        await g.stop()


async def test_webhook_method_and_size(gw):
    status, headers, _ = await gw.raw("GET", "/webhooks/stripe")
    assert status == 405 and headers["allow"] == "POST"
    status, _, _ = await gw.raw("POST", "/webhooks/stripe", data=b"x" * (1024 * 1024 + 1))
    assert status == 413


def test_stripe_and_the_webhook_are_imported_only_when_first_used(tmp_path):
    import subprocess
    import sys

    code = ("import sys\nfrom reapi.app import create_app\nfrom reapi.settings import Settings\n"
            f"create_app(Settings(database_url='sqlite:///{tmp_path}/x.db'))\n"
            "loaded = [m for m in ('stripe', 'requests', 'reapi.payments.stripe', 'reapi.stripe_hook', 'reapi.reports') "
            "if m in sys.modules]\nassert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_an_event_that_overtakes_the_stored_session_id_still_credits_once(gw, fake):
    acc = await account(gw)
    c = await checkout(gw, acc, "15")
    other = await checkout(gw, acc, "15")
    async with gw.gw.engine.begin() as conn:  # as if the webhook came before start_checkout stored the id
        await conn.execute(text(f"UPDATE topups SET session_id = NULL WHERE id = {c.topup_id}"))
    session = fake.sessions[c.session_id]
    # another session naming this top-up in its metadata credits neither
    forged = {**fake.sessions[other.session_id], "metadata": {**session["metadata"]}}
    assert (await deliver(gw, event(forged)))[1]["result"] == "mismatch"
    assert await status_of(gw, other.topup_id) == "mismatch" and await status_of(gw, c.topup_id) == "pending"
    assert (await deliver(gw, event(session)))[1]["result"] == "credited"
    async with gw.gw.engine.connect() as conn:
        assert (await conn.execute(text(f"SELECT session_id FROM topups WHERE id = {c.topup_id}"))).scalar() \
            == c.session_id
    assert (await deliver(gw, event(session)))[1]["result"] == "duplicate"
    assert await wallets(gw, acc) == {"chat": 15_000_000_000, "tasks": 0}
    assert await books(gw) == []
