"""The operator overview over real HTTP, on SQLite and PostgreSQL: requests, spend, errors and latency
per model and per channel over 24 h and 7 days (the numbers equal the usage rows real calls wrote,
the charts are SVG drawn from them), tasks by state from real tasks run by the worker, and the ledger
check's result kept in the store: a second instance on the same store shows the same status and
when it ran."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import orjson
from sqlalchemy import text

from reapi.billing.money import format_usd
from tests.console.conftest import WebClient, seed_model
from tests.harness import Gateway, gateway_settings
from tests.tasks.conftest import tg  # noqa: F401

ADMIN, PASSWORD = "ops@example.com", "correct horse"
DAY_MS = 86_400_000


class Figures(HTMLParser):
    """figure id -> (svg count, rect tooltips, legend items) and table id -> rows of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict] = {}
        self.tables: dict[str, list[list[str]]] = {}
        self._fig = self._table = None
        self._title = self._li = self._cell = False
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure" and a.get("id"):
            self._fig = self.figures.setdefault(a["id"], {"svg": 0, "tips": [], "legend": []})
        elif tag == "svg" and self._fig is not None:
            self._fig["svg"] += 1
        elif tag == "title" and self._fig is not None:
            self._title, self._text = True, []
        elif tag == "li" and self._fig is not None:
            self._li, self._text = True, []
        elif tag == "table" and a.get("id"):
            self._table = self.tables.setdefault(a["id"], [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell, self._text = True, []

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig = None
        elif tag == "title" and self._title:
            self._fig["tips"].append("".join(self._text))
            self._title = False
        elif tag == "li" and self._li:
            self._fig["legend"].append("".join(self._text).strip())
            self._li = False
        elif tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell:
            self._table[-1].append("".join(self._text).strip())
            self._cell = False

    def handle_data(self, data):
        if self._title or self._li or self._cell:
            self._text.append(data)


def figures(body: str) -> Figures:
    p = Figures()
    p.feed(body)
    p.close()
    return p


async def admin_client(gw: Gateway) -> WebClient:
    c = WebClient(gw.url)
    gw.clients.append(c)
    st, _, _ = await c.login(ADMIN)
    assert st in (302, 303)
    await c.get("/admin/console")  # the session's CSRF token
    return c


async def chat(gw: Gateway, key: str, content: str) -> int:
    st, _, _ = await gw.raw("POST", "/v1/chat/completions", json={"model": "gpt-5.5", "messages": [
        {"role": "user", "content": content}]}, headers={"Authorization": f"Bearer {key}"})
    return st


async def expected(gw: Gateway, since_ms: int) -> dict:
    """What the usage rows say about calls since `since_ms` (the overview must show exactly this)."""
    async with gw.gw.engine.connect() as conn:
        r = (await conn.execute(text(
            "SELECT count(*), coalesce(sum(cost_nano), 0), "
            "sum(CASE WHEN status IN ('failed', 'expired') THEN 1 ELSE 0 END), "
            "sum(CASE WHEN settled_at IS NOT NULL THEN settled_at - created_at ELSE 0 END), "
            "sum(CASE WHEN settled_at IS NOT NULL THEN 1 ELSE 0 END) FROM usage WHERE created_at >= :s"),
            {"s": since_ms})).one()
    return {"requests": int(r[0]), "spend_usd": format_usd(int(r[1])), "errors": int(r[2] or 0),
            "avg_latency_ms": int(r[3]) // int(r[4]) if r[4] else None}


async def test_traffic_and_tasks_per_model_channel_and_window(tg):  # noqa: F811
    gw = tg.gw
    await gw.admin("POST", "/admin/users", {"email": ADMIN, "password": PASSWORD, "admin": True}, expect=201)
    await seed_model(gw, tg.upstream)
    acc = await gw.admin("POST", "/admin/accounts", {"name": "callers"}, expect=201)
    await gw.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "5"}, expect=201)
    key = (await gw.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k"}, expect=201))["key"]
    assert [await chat(gw, key, f"hi {i} [mock delay_ms=120 words=4]") for i in range(3)] == [200] * 3
    assert await chat(gw, key, "boom [mock status=503]") >= 500
    # tasks: one completes, one fails upstream, one stays running
    ids = {}
    for name, prompt in (("done", "a cat"), ("failed", "a dog [ark fail]"), ("open", "a bird [ark stuck]")):
        s, _, t = await tg.call("POST", "/videos/generations", {"model": "doubao-seedance-2.0", "prompt": prompt,
                                                               "duration": 5})
        assert s == 200, t
        ids[name] = t["id"]
    assert (await tg.wait(ids["done"]))["status"] == "completed"
    assert (await tg.wait(ids["failed"]))["status"] == "failed"
    # one call two days old: in the 7-day window only; one 8 days old: in neither
    async with gw.gw.engine.begin() as conn:
        rids = (await conn.execute(text("SELECT request_id FROM usage WHERE status = 'ok' ORDER BY id"))
                ).scalars().all()
        for rid, days in ((rids[0], 2), (rids[1], 8)):
            await conn.execute(text("UPDATE usage SET created_at = created_at - :d, settled_at = settled_at - :d "
                                    "WHERE request_id = :r"), {"d": days * DAY_MS, "r": rid})
    ops = await admin_client(gw)
    channel = next(c for c in (await gw.admin("GET", "/admin/channels"))["data"] if c["name"] == "mock")
    for window, days in (("24h", 1), ("7d", 7)):
        st, _, body = await ops.get(f"/admin/console?window={window}&format=json")
        assert st == 200, body[:300]
        ctx = orjson.loads(body)
        assert ctx["window"] == window
        async with gw.gw.engine.connect() as conn:
            now = (await conn.execute(text("SELECT max(created_at) FROM usage"))).scalar_one()
        want = await expected(gw, now - days * DAY_MS + 60_000)  # a minute of slack for the test's own run
        assert want["requests"] == (2 if window == "24h" else 3) and want["errors"] == 1
        by = {s["by"]: {i["name"]: i for i in s["rows"]} for s in ctx["by"]}
        m = by["model"]["gpt-5.5"]
        assert {k: m[k] for k in want} == want, (window, m, want)
        assert m["avg_latency_ms"] >= 50  # every ok call waited 120 ms upstream, the failed one none
        c = by["channel"]["mock"]
        assert (c["key"], c["requests"], c["errors"]) == (channel["id"], want["requests"], 1)
        assert (ctx["requests"], ctx["errors"], ctx["spend_usd"]) == (want["requests"], 1, want["spend_usd"])
        tasks = {t["window"]: t for t in ctx["tasks"]}
        for w in ("24h", "7d"):
            assert (tasks[w]["processing"], tasks[w]["completed"], tasks[w]["failed"]) == (1, 1, 1), tasks
        # the page: tables and one SVG chart per metric and dimension, drawn from the same numbers
        st, _, body = await ops.get(f"/admin/console?window={window}")
        page = figures(body)
        rows = {r[0]: r for r in page.tables["by-model"][1:]}
        assert rows["gpt-5.5"][1:4] == [str(want["requests"]), "$" + want["spend_usd"], "1"]
        assert page.tables["tasks-by-state"][1][1:] == ["1", "1", "1"]
        for dim in ("model", "channel"):
            for metric in ("requests", "spend", "errors", "latency"):
                fig = page.figures[f"chart-{dim}-{metric}"]
                assert fig["svg"] == 1, (dim, metric)
            label = "gpt-5.5" if dim == "model" else "mock"
            assert fig["legend"] == [] and page.figures[f"chart-{dim}-requests"]["legend"] == [label]
            tips = page.figures[f"chart-{dim}-requests"]["tips"]
            drawn = sum(int(t.rsplit(": ", 1)[1]) for t in tips if f" {label}: " in t)
            assert drawn == want["requests"], (dim, tips)
            errs = page.figures[f"chart-{dim}-errors"]["tips"]
            assert sum(int(t.rsplit(": ", 1)[1]) for t in errs if f" {label}: " in t) == 1
            lat = page.figures[f"chart-{dim}-latency"]["tips"]
            assert any(t.endswith(f"ms: {want['avg_latency_ms']}") for t in lat), lat
    # an unknown window falls back to 24 h
    st, _, body = await ops.get("/admin/console?window=1y&format=json")
    assert orjson.loads(body)["window"] == "24h"


async def test_the_last_ledger_check_is_kept_in_the_store_for_every_instance(store_url, upstream):
    a = await Gateway(gateway_settings(store_url)).start()
    b = await Gateway(gateway_settings(store_url)).start()  # a second instance on the same store
    try:
        await a.admin("POST", "/admin/users", {"email": ADMIN, "password": PASSWORD, "admin": True}, expect=201)
        acc = await a.admin("POST", "/admin/accounts", {"name": "books"}, expect=201)
        await a.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "3"}, expect=201)
        on_a, on_b = await admin_client(a), await admin_client(b)
        _, _, body = await on_b.get("/admin/console")
        assert 'id="ledger-never"' in body and 'id="ledger-status"' not in body
        st, _, body = await on_a.post("/admin/console/ledger/verify", {})
        assert st == 200 and 'id="ledger-status"' in body
        for client in (on_a, on_b):  # a plain visit, on either instance, shows the stored result
            _, _, body = await client.get("/admin/console")
            assert re.search(r'id="ledger-status"[^>]*>ledger ok: every balance equals the sum', body), body[:2000]
            ran = re.search(r'id="ledger-ran-at" datetime="([^"]+)"', body).group(1)
            ctx = orjson.loads((await client.get("/admin/console?format=json"))[2])
            assert ctx["ledger"]["ok"] is True and ctx["ledger"]["ran_at"] == ran
        async with a.gw.engine.connect() as conn:
            row = (await conn.execute(text("SELECT ok, problem_count, user_id, ran_at FROM ledger_checks"))).all()
            admin_id = (await conn.execute(text("SELECT id FROM users WHERE email = :e"), {"e": ADMIN})).scalar()
        assert len(row) == 1 and bool(row[0][0]) is True and row[0][1:3] == (0, admin_id)
        # books broken behind the gateway's back: a check on b replaces the row; a shows its problem
        async with a.gw.engine.begin() as conn:
            await conn.execute(text("UPDATE wallets SET balance_nano = balance_nano + 1 "
                                    "WHERE account_id = :a AND wallet = 'chat'"), {"a": acc["id"]})
        st, _, _ = await on_b.post("/admin/console/ledger/verify", {})
        assert st == 200
        _, _, body = await on_a.get("/admin/console")
        assert "ledger: 1 problem(s)" in body and f"account {acc['id']} wallet chat: balance" in body
        ctx = orjson.loads((await on_a.get("/admin/console?format=json"))[2])
        assert ctx["ledger"]["ran_at_ms"] >= row[0][3] and ctx["ledger"]["count"] == 1
        async with a.gw.engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM ledger_checks"))).scalar() == 1
        async with a.gw.engine.begin() as conn:
            await conn.execute(text("UPDATE wallets SET balance_nano = balance_nano - 1 "
                                    "WHERE account_id = :a AND wallet = 'chat'"), {"a": acc["id"]})
    finally:
        await b.stop()
        await a.stop()


def overview_in_chromium(b, base: str) -> dict:
    ctx = b.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    seen: dict = {}
    try:
        page.goto(base + "/login")
        page.get_by_label("E-mail").fill(ADMIN)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + "/console")
        page.goto(base + "/admin/console")
        seen["never"] = page.locator("#ledger-never").is_visible()
        chart = page.locator("#chart-model-requests svg")
        box = chart.bounding_box()
        seen["chart_size"] = (box["width"], box["height"]) if box else (0, 0)
        seen["chart_name"] = page.get_by_role("img", name=re.compile("Requests per 1 h by model")).count()
        seen["bars"] = page.locator("#chart-model-requests svg rect").count()
        page.get_by_role("link", name="7 days").click()
        page.wait_for_url(base + "/admin/console?window=7d")
        seen["heading_7d"] = page.locator("#traffic h2").inner_text()
        page.get_by_role("button", name="Verify the ledger now").click()
        page.wait_for_load_state()
        seen["status"] = page.locator("#ledger-status").inner_text()
        page.goto(base + "/admin/console")  # a plain visit shows the kept result and when it ran
        seen["kept"] = page.locator("#ledger-status").inner_text()
        seen["ran_at"] = page.locator("#ledger-ran-at").get_attribute("datetime")
    finally:
        ctx.close()
    return seen


async def test_the_overview_in_chromium(browser, console, upstream):
    gw = console
    await gw.admin("POST", "/admin/users", {"email": ADMIN, "password": PASSWORD, "admin": True}, expect=201)
    acc = await gw.admin("POST", "/admin/accounts", {"name": "callers"}, expect=201)
    await gw.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "5"}, expect=201)
    key = (await gw.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k"}, expect=201))["key"]
    assert await chat(gw, key, "hi") == 200
    seen = await browser.run(overview_in_chromium, gw.url)
    assert seen["never"] is True
    assert seen["chart_size"][0] > 200 and seen["chart_size"][1] > 50, seen
    assert seen["chart_name"] == 1 and seen["bars"] == 1  # one call: one bar, named by its aria-label
    assert seen["heading_7d"] == "Traffic, last 7 days"
    assert seen["status"].startswith("ledger ok") and seen["kept"].startswith("ledger ok")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", seen["ran_at"])
