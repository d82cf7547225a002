"""HTML quality of every public page and every operator page, over real HTTP (SQLite and PostgreSQL):
every GET page of the site's and the operator console's page tables (and the public sign-in pages)
is fetched as HTML and as its JSON context, and a parser (the standard library's html.parser) must
find (a) every table and code block the context says the page has: one rate-card row per priced
model (two for a long-context one), one row per SKU, per parameter, per error, per channel, ...,
each sample in <pre><code>; and (b) the accessibility basics: every form control (not hidden, not a
button) named by a <label for> its id or an aria-label, exactly one <h1>, no heading level skipped."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import orjson

from reapi.admin_console.routes import PAGES as OPERATOR_PAGES
from reapi.site.routes import PAGES as SITE_PAGES
from tests.console.conftest import WebClient, seed_model
from tests.site.test_site import HTML, PRICE
from tests.tasks.conftest import tg  # noqa: F401

ADMIN = "ops@example.com"
SIGN_IN_PAGES = ("/login", "/signup", "/password/forgot")  # public pages of the console
BUTTONS = ("hidden", "submit", "button", "reset", "image")


class Page(HTMLParser):
    """Tables (id, rows with a <td>; an empty-state row, one <td colspan>, is not an item), <pre><code>
    blocks, headings, links, form controls and labels."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.blocks: list[dict] = []  # <code> directly in <pre>
        self.headings: list[int] = []
        self.links: list[str] = []
        self.controls: list[dict] = []
        self.label_for: set[str] = set()
        self.ids: list[str] = []
        self._table: list[dict] = []
        self._row: list[bool] = []  # the current row's cells: has colspan
        self._pre = 0
        self._code: dict | None = None
        self._label_depth = 0

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if a.get("id"):
            self.ids.append(a["id"])
        if tag == "table":
            self._table.append({"id": a.get("id", ""), "rows": 0})
            self.tables.append(self._table[-1])
        elif tag == "tr":
            self._row = []
        elif tag == "td" and self._table:
            self._row.append("colspan" in a)
        elif tag == "pre":
            self._pre += 1
        elif tag == "code" and self._pre:
            self._code = {"class": a.get("class", ""), "text": ""}
        elif re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        elif tag == "label":
            self._label_depth += 1
            if a.get("for"):
                self.label_for.add(a["for"])
        elif tag in ("input", "select", "textarea") and (tag != "input" or a.get("type", "text") not in BUTTONS):
            self.controls.append({"name": a.get("name", tag), "id": a.get("id"), "aria": a.get("aria-label"),
                                  "wrapped": self._label_depth > 0})

    def handle_endtag(self, tag):
        if tag == "table" and self._table:
            self._table.pop()
        elif tag == "tr" and self._table and self._row and self._row != [True]:
            self._table[-1]["rows"] += 1
        elif tag == "pre":
            self._pre -= 1
        elif tag == "code" and self._code is not None:
            self.blocks.append(self._code)
            self._code = None
        elif tag == "label":
            self._label_depth -= 1

    def handle_data(self, data):
        if self._code is not None:
            self._code["text"] += data

    def rows(self, table_id: str) -> int:
        found = [t for t in self.tables if t["id"] == table_id]
        assert len(found) == 1, (table_id, self.tables)
        return found[0]["rows"]


def parse(body: str) -> Page:
    p = Page()
    p.feed(body)
    p.close()
    return p


def a11y_problems(p: Page) -> list[str]:
    out = []
    for c in p.controls:
        named = bool(c["aria"]) or (c["id"] is not None and c["id"] in p.label_for)
        if not named:
            out.append(f"control {c['name']} has no <label for> or aria-label")
    dupes = {i for i in p.ids if p.ids.count(i) > 1}
    if dupes:
        out.append(f"repeated ids {sorted(dupes)}")
    if p.headings.count(1) != 1:
        out.append(f"{p.headings.count(1)} h1 elements")
    if p.headings and p.headings[0] != 1:
        out.append(f"first heading is h{p.headings[0]}")
    out += [f"h{a} -> h{b} skips a level" for a, b in zip(p.headings, p.headings[1:]) if b > a + 1]
    return out


def site_expectations(path: str, ctx: dict, p: Page) -> None:
    """(a) for the public pages: what the JSON context lists, the parser finds."""
    if path == "/":
        assert len(p.tables) == len(ctx["catalog"])
        assert sum(t["rows"] for t in p.tables) == sum(len(s["models"]) for s in ctx["catalog"])
    elif path == "/pricing":
        models = ctx["models"]
        assert p.rows("rate-card") == len(models) + sum(1 for m in models if m["usd_per_mtok"]["long_context"])
        assert p.rows("task-rate-card") == sum(len(t["skus"]) for t in ctx["task_models"])
    elif path == "/docs":
        for s in ctx["catalog"]:
            for m in s["models"]:
                assert f"/docs/{m['name']}" in p.links, m["name"]
    elif path.startswith("/docs/"):
        samples = [b for b in p.blocks if "sample" in b["class"].split()]
        assert [b["text"].strip() for b in samples] == [s["code"].strip() for s in ctx["samples"]]
        assert p.rows("parameters-table") == len(ctx["parameters"])
        assert p.rows("errors-table") == len(ctx["errors"])
        if ctx["model"].get("kind") == "task":
            assert p.rows("sku-table") == len(ctx["model"]["skus"])
        else:
            recipes = [b for b in p.blocks if "recipe" in b["class"].split()]
            assert [b["text"].strip() for b in recipes] == [r["code"].strip() for r in ctx["recipes"]]


def operator_expectations(path: str, ctx: dict, p: Page) -> None:
    """(a) for the operator pages: a table whose id names a list of the context has one row per item."""
    for t in p.tables:
        if isinstance(ctx.get(t["id"]), list):
            assert t["rows"] == len(ctx[t["id"]]), (path, t["id"])
    if path.startswith("/admin/console") and "by" in ctx:  # the overview
        for s in ctx["by"]:
            if s["rows"]:
                assert p.rows(f"by-{s['by']}") == len(s["rows"])
        assert p.rows("tasks-by-state") == len(ctx["tasks"]) and p.rows("health") == len(ctx["channels"])
    if "record" in ctx and ctx["record"]:
        assert p.rows("usage-record") == len(ctx["record"])


async def test_every_public_and_operator_page_parses_and_meets_the_a11y_basics(tg):  # noqa: F811
    gw = tg.gw
    await seed_model(gw, tg.upstream)
    await gw.admin("PUT", "/admin/models/gpt-5.5", PRICE, expect=200)  # a long-context tier: two rate-card rows
    await gw.admin("POST", "/admin/users", {"email": ADMIN, "password": "correct horse", "admin": True}, expect=201)
    acc = await gw.admin("POST", "/admin/accounts", {"name": "caller"}, expect=201)
    await gw.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "5"}, expect=201)
    key = await gw.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "k"}, expect=201)
    st, h, _ = await gw.raw("POST", "/v1/chat/completions", json={"model": "gpt-5.5", "messages": [
        {"role": "user", "content": "hi"}]}, headers={"Authorization": f"Bearer {key['key']}"})
    assert st == 200
    request_id = h["x-request-id"]
    await gw.admin("POST", "/admin/codes", {"amount_usd": "1", "count": 2}, expect=201)
    s, _, _ = await tg.call("POST", "/videos/generations", {"model": "doubao-seedance-2.0", "prompt": "a cat"})
    assert s == 200

    ops = WebClient(gw.url)
    gw.clients.append(ops)
    assert (await ops.login(ADMIN))[0] in (302, 303)
    guest = WebClient(gw.url)
    gw.clients.append(guest)

    docs = orjson.loads((await guest.get("/docs?format=json"))[2])
    served = [m["name"] for section in docs["catalog"] for m in section["models"]]
    assert {"gpt-5.5", "doubao-seedance-2.0"} <= set(served)  # a chat page and a task page at least
    channel = next(c for c in (await gw.admin("GET", "/admin/channels"))["data"] if c["name"] == "mock")
    fill = {"{model:path}": served, "{account_id:int}": [str(acc["id"])], "{channel_id:int}": [str(channel["id"])],
            "{key_id:int}": [str(key["id"])]}
    pages: list[tuple[str, WebClient]] = []
    for table, client in ((SITE_PAGES, guest), (OPERATOR_PAGES, ops)):
        for page in table:
            if page.method != "GET":
                continue
            paths = [page.path]
            for hole, values in fill.items():
                if hole in page.path:
                    paths = [p.replace(hole, v) for p in paths for v in values]
            assert not any("{" in p for p in paths), f"a page of the table is not covered: {page.path}"
            pages += [(p, client) for p in paths]
    pages += [(p, guest) for p in SIGN_IN_PAGES]
    pages += [("/admin/console?window=7d", ops), ("/admin/console/models?model=gpt-5.5", ops),
              ("/admin/console/task-models?model=doubao-seedance-2.0", ops),
              (f"/admin/console/usage?request_id={request_id}", ops)]

    problems: dict[str, list[str]] = {}
    checked = 0
    for path, client in pages:
        st, h, body = await client.get(path, headers=HTML)
        assert st == 200, (path, st, body[:300])
        if not h["content-type"].startswith("text/html"):  # /llms.txt, /openapi.json, CSV downloads
            assert path.split("?")[0].endswith((".txt", ".json", ".csv")), (path, h["content-type"])
            continue
        p = parse(body)
        sep = "&" if "?" in path else "?"
        st, _, raw = await client.get(f"{path}{sep}format=json", headers=HTML)  # /pricing: the page's context
        assert st == 200, path
        ctx = orjson.loads(raw)
        if path.startswith("/admin/"):
            operator_expectations(path, ctx, p)
        elif path not in SIGN_IN_PAGES:
            site_expectations(path.split("?")[0], ctx, p)
        found = a11y_problems(p)
        if found:
            problems[path] = found
        checked += 1
    assert problems == {}, "\n".join(f"{k}: {v}" for k, v in problems.items())
    assert checked >= 18


def test_the_checks_fail_on_bad_html():
    """The rules catch what they are for (so a page passing them means something)."""
    bad = parse('<h1>A</h1><h3>skip</h3><h1>again</h1><label>E-mail <input name="email"></label>'
                '<input name="q"><label for="x">X</label><input id="x" name="x"><select name="s"></select>'
                '<input type="hidden" name="csrf_token"><input name="n" aria-label="N"><p id="d"></p><p id="d"></p>')
    found = a11y_problems(bad)
    assert "control email has no <label for> or aria-label" in found
    for name in ("q", "s"):
        assert f"control {name} has no <label for> or aria-label" in found
    assert not any(("control x " in f) or ("control n " in f) or "csrf_token" in f for f in found)
    assert "2 h1 elements" in found and "h1 -> h3 skips a level" in found and "repeated ids ['d']" in found
    assert a11y_problems(parse('<h1>A</h1><label for="e">E <input id="e" name="e"></label>')) == []
    t = parse("<table id='t'><thead><tr><th>h</th></tr></thead><tbody><tr><td>1</td></tr><tr><td>2</td></tr>"
              "</tbody></table><pre><code class='sample'>curl</code></pre><code>inline</code>")
    assert t.rows("t") == 2 and [b["text"] for b in t.blocks] == ["curl"]
    empty = parse("<table id='e'><tbody><tr><td colspan='3'>Nothing yet.</td></tr></tbody></table>")
    assert empty.rows("e") == 0
