"""The public site over real HTTP: pages from the catalog, the rate card as billing charges it, the
docs' samples run against the gateway, the parameters they advertise pass the validator, the
operator-edited catalog fields, /pricing's JSON unchanged for API clients."""
from __future__ import annotations

import asyncio
import html
import os
import re
import subprocess
import sys
from decimal import ROUND_CEILING, Decimal
from html.parser import HTMLParser

import orjson
import pytest

from reapi.api.validation import validate_chat
from reapi.errors import GatewayError
from tests.harness import UPSTREAM_KEY

PRICE = {"input_usd_per_mtok": "5.00", "output_usd_per_mtok": "30.00", "cached_input_usd_per_mtok": "0.50",
         "cache_write_usd_per_mtok": "6.25", "context_window": 1_000_000, "max_output_tokens": 128_000,
         "long_context": {"threshold_tokens": 272_000, "input_multiplier": "2", "output_multiplier": "1.5"},
         "description": "The flagship model. Best for hard multi-step work.", "tags": ["reasoning", "tools"]}
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


class Blocks(HTMLParser):
    """Every table and every <code> block of a page (a parser must find them: the page is well-formed)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[str] = []
        self.codes: list[tuple[dict, str]] = []
        self.headings: list[int] = []
        self._code: dict | None = None
        self._text: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append(dict(attrs).get("id", ""))
        if tag == "code":
            self._code, self._text = dict(attrs), []
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))

    def handle_endtag(self, tag):
        if tag == "code" and self._code is not None:
            self.codes.append((self._code, "".join(self._text)))
            self._code = None

    def handle_data(self, data):
        if self._code is not None:
            self._text.append(data)


def parse(text: str) -> Blocks:
    p = Blocks()
    p.feed(text)
    p.close()
    return p


async def priced(gw, upstream) -> dict:
    await gw.admin("PUT", "/admin/models/gpt-5.5", PRICE, expect=200)
    acc = await gw.admin("POST", "/admin/accounts", {"name": "docs"}, expect=201)
    await gw.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "10.00"}, expect=201)
    key = await gw.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "docs"}, expect=201)
    return {"account_id": acc["id"], "key": key["key"]}


async def test_home_pricing_docs_and_llms_txt(console, upstream):
    await priced(console, upstream)
    st, h, body = await console.raw("GET", "/", headers=HTML)
    text = body.decode()
    assert st == 200 and h["content-type"].startswith("text/html")
    assert "gpt-5.5" in text and "The flagship model." in text and "$5.00" in text and 'href="/signup"' in text
    st, h, body = await console.raw("GET", "/pricing", headers=HTML)
    page = parse(body.decode())
    assert st == 200 and "rate-card" in page.tables
    text = body.decode()
    # both tiers resolved: input 5 -> 10, cached 0.50 -> 1.00, write 6.25 -> 12.50, output 30 -> 45
    for v in ("$5.00", "$0.50", "$6.25", "$30.00", "$10.00", "$1.00", "$12.50", "$45.00", "272,000"):
        assert v in text, v
    st, _, body = await console.raw("GET", "/docs", headers=HTML)
    assert st == 200 and 'href="/docs/gpt-5.5"' in body.decode() and 'href="/admin/docs"' in body.decode()
    st, h, body = await console.raw("GET", "/llms.txt")
    assert st == 200 and h["content-type"].startswith("text/plain")
    assert f"[gpt-5.5]({console.url}/docs/gpt-5.5)" in body.decode()
    st, _, body = await console.raw("GET", "/openapi.json")
    doc = orjson.loads(body)
    props = doc["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert props["properties"]["temperature"]["anyOf"][0] == {"type": "number", "minimum": 0, "maximum": 2}
    assert {"/v1/models", "/v1/responses", "/v1/messages"} <= doc["paths"].keys()
    # headings in order and one h1 on every page (a11y basics), HTML and JSON from one context
    for path in ("/", "/pricing", "/docs", "/docs/gpt-5.5"):
        _, _, body = await console.raw("GET", path, headers=HTML)
        heads = parse(body.decode()).headings
        assert heads.count(1) == 1 and heads[0] == 1, (path, heads)
        assert all(b - a <= 1 for a, b in zip(heads, heads[1:])), (path, heads)
    _, _, body = await console.raw("GET", "/docs/gpt-5.5", headers=HTML)
    page = parse(body.decode())
    assert {"parameters-table", "errors-table"} <= set(page.tables)
    assert len([c for a, c in page.codes if "sample" in a.get("class", "") and c.strip()]) == 4
    st, _, body = await console.raw("GET", "/docs/gpt-5.5?format=json")
    ctx = orjson.loads(body)
    assert ctx["model"]["name"] == "gpt-5.5" and ctx["model"]["tags"] == ["reasoning", "tools"]
    assert not any(k.startswith("_") for k in ctx)


async def test_pricing_json_is_unchanged_for_api_clients(console, upstream):
    await priced(console, upstream)
    expected = orjson.dumps({"object": "list", "currency": "USD", "unit": "per 1M tokens", "data": [{
        "model": "gpt-5.5", "input_usd_per_mtok": "5.00", "output_usd_per_mtok": "30.00",
        "cached_input_usd_per_mtok": "0.50", "cache_write_usd_per_mtok": "6.25", "context_window": 1000000,
        "max_output_tokens": 128000,
        "long_context": {"threshold_tokens": 272000, "input_multiplier": "2.0", "output_multiplier": "1.5"},
        "aliases": []}]})
    for headers in ({}, {"Accept": "application/json"}, {"Accept": "*/*"},
                    {"Accept": "application/json, text/html;q=0.5"}):
        st, h, body = await console.raw("GET", "/pricing", headers=headers)
        assert st == 200 and h["content-type"] == "application/json" and body == expected, headers


async def test_the_samples_on_a_model_page_run_against_the_gateway(console, upstream, tmp_path):
    s = await priced(console, upstream)
    st, _, body = await console.raw("GET", "/docs/gpt-5.5", headers=HTML)
    assert st == 200
    samples = {a.get("data-lang"): html.unescape(code) for a, code in parse(body.decode()).codes
               if "sample" in a.get("class", "")}
    assert set(samples) == {"curl", "python", "node", "go"}
    for lang in ("node", "go"):
        assert console.url in samples[lang] and "gpt-5.5" in samples[lang]
    env = {**os.environ, "REAPI_API_KEY": s["key"]}
    out = await run(["bash", "-c", samples["curl"]], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    reply = orjson.loads(out.stdout)
    assert reply["object"] == "chat.completion" and reply["model"] == "gpt-5.5", reply
    script = tmp_path / "sample.py"
    script.write_text(samples["python"])
    out = await run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
    for recipe in [html.unescape(c) for a, c in parse(body.decode()).codes if "recipe" in a.get("class", "")]:
        script.write_text(recipe)
        out = await run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
    usage = await console.usage(s["account_id"])
    assert len(usage) == 4 and all(u["status"] == "ok" for u in usage), usage
    assert await console.verify() == []


async def run(*args, **kw):
    """subprocess.run in a thread: the gateway under test serves on this loop meanwhile."""
    return await asyncio.to_thread(subprocess.run, *args, **kw)


def _rule_values(p: dict) -> tuple[list, list]:
    """Values the page's range says are allowed, and ones it says are not."""
    ok, bad = [p["example"]], []
    if p.get("minimum") is not None:
        ok.append(p["minimum"])
        bad.append(p["minimum"] - 1)
    if p.get("maximum") is not None:
        ok.append(p["maximum"])
        bad.append(p["maximum"] + 1)
    if p["type"] == "string" and p.get("enum"):
        ok += p["enum"]
        bad.append("not-a-listed-value")
    return ok, bad


async def test_every_advertised_parameter_passes_the_validator_and_prices_match_billing(console, upstream):
    s = await priced(console, upstream)
    st, _, body = await console.raw("GET", "/docs/gpt-5.5?format=json")
    ctx = orjson.loads(body)
    params = ctx["parameters"]
    assert {"temperature", "max_completion_tokens", "tools", "reasoning_effort", "stream"} <= {p["name"] for p in params}
    base = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
    for p in params:
        ok, bad = _rule_values(p)
        for value in ok:
            extra = {"stream": True} if p["name"] == "stream_options" else {}
            extra |= {"logprobs": True} if p["name"] == "top_logprobs" else {}
            validate_chat({**base, **extra, p["name"]: "gpt-5.5" if value == "MODEL" else value})
        for value in bad:
            with pytest.raises(GatewayError):
                validate_chat({**base, p["name"]: value})
    # a real call's charge equals the page's rates applied to its tokens
    client = console.client(s["key"])
    await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "price me"}])
    u = (await console.usage(s["account_id"]))[0]
    rates = ctx["model"]["usd_per_mtok"]["base"]
    uncached = u["prompt_tokens"] - u["cached_tokens"] - u["cache_write_tokens"]
    usd = (uncached * Decimal(rates["input"]) + u["cached_tokens"] * Decimal(rates["cached_input"])
           + u["cache_write_tokens"] * Decimal(rates["cache_write"])
           + u["completion_tokens"] * Decimal(rates["output"])) / 1_000_000
    assert Decimal(u["cost_usd"]) == usd.quantize(Decimal("1e-9"), rounding=ROUND_CEILING) > 0
    # the worked example is billing's own arithmetic on the page's rates
    ex = ctx["example"]
    want = ((ex["prompt_tokens"] - ex["cached_tokens"]) * Decimal(rates["input"])
            + ex["cached_tokens"] * Decimal(rates["cached_input"]) + ex["completion_tokens"] * Decimal(rates["output"]))
    assert Decimal(ex["cost_usd"]) == (want / 1_000_000).quantize(Decimal("1e-9"), rounding=ROUND_CEILING)


async def test_operators_edit_descriptions_tags_and_hide_models(console, upstream):
    await priced(console, upstream)
    row = await console.admin("PUT", "/admin/models/gpt-5.4", {
        "input_usd_per_mtok": "1", "output_usd_per_mtok": "2", "context_window": 1000, "max_output_tokens": 100,
        "description": "A small one.", "category": "chat", "tags": ["cheap"], "hidden": True}, expect=200)
    assert (row["description"], row["category"], row["tags"], row["hidden"]) == ("A small one.", "chat", ["cheap"], True)
    chans = await console.admin("GET", "/admin/channels")
    cid = chans["data"][0]["id"] if "data" in chans else chans[0]["id"]
    await console.admin("PATCH", f"/admin/channels/{cid}", {"models": ["gpt-5.5", "gpt-5.4"]}, expect=200)
    _, _, body = await console.raw("GET", "/pricing")
    assert [m["model"] for m in orjson.loads(body)["data"]] == ["gpt-5.5"]
    st, _, _ = await console.raw("GET", "/docs/gpt-5.4", headers=HTML)
    assert st == 404
    # a name with a slash (the CLI can set one) has its page too, and the index links to it
    from reapi import operations as ops

    async with console.gw.engine.begin() as conn:
        await ops.set_price(conn, "org/model-x", input_usd_per_mtok="1", output_usd_per_mtok="2",
                            context_window=1000, max_output_tokens=100)
    await console.admin("PATCH", f"/admin/channels/{cid}", {"models": ["gpt-5.5", "gpt-5.4", "org/model-x"]},
                        expect=200)
    st, _, body = await console.raw("GET", "/docs/org/model-x", headers=HTML)
    assert st == 200 and b"<h1>org/model-x</h1>" in body
    _, _, body = await console.raw("GET", "/docs", headers=HTML)
    assert b'href="/docs/org/model-x"' in body
    # a price change without the catalog fields keeps them; the model shown again
    row = await console.admin("PUT", "/admin/models/gpt-5.4", {
        "input_usd_per_mtok": "1", "output_usd_per_mtok": "3", "context_window": 1000, "max_output_tokens": 100,
        "hidden": False}, expect=200)
    assert (row["description"], row["tags"], row["hidden"]) == ("A small one.", ["cheap"], False)
    _, _, body = await console.raw("GET", "/", headers=HTML)
    assert "A small one." in body.decode()
    bad = await console.admin("PUT", "/admin/models/gpt-5.4", {
        "input_usd_per_mtok": "1", "output_usd_per_mtok": "3", "context_window": 1000, "max_output_tokens": 100,
        "category": "nope"}, expect=400)
    assert bad["error"]["param"] == "category"
    # markup in a description is shown as text
    await console.admin("PUT", "/admin/models/gpt-5.4", {
        "input_usd_per_mtok": "1", "output_usd_per_mtok": "3", "context_window": 1000, "max_output_tokens": 100,
        "description": "<script>alert(1)</script>"}, expect=200)
    _, _, body = await console.raw("GET", "/docs/gpt-5.4", headers=HTML)
    assert b"<script>alert" not in body and b"&lt;script&gt;" in body


def test_the_cli_sets_the_catalog_fields(store_url):
    from click.testing import CliRunner

    from reapi.cli import main
    from reapi.store.db import migrate

    migrate(store_url)
    env = {"REAPI_DATABASE_URL": store_url}
    r = CliRunner().invoke(main, ["models", "set", "m1", "--input", "1", "--output", "2", "--description",
                                  "Hello there.", "--tag", "fast", "--tag", "cheap", "--hidden"], env=env)
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["models", "set", "m1", "--input", "1", "--output", "2", "--shown"], env=env)
    assert r.exit_code == 0, r.output
    from reapi.store import queries
    from reapi.store.db import create_engine

    async def row():
        engine = create_engine(store_url)
        try:
            async with engine.connect() as conn:
                return await queries.get_model(conn, "m1")
        finally:
            await engine.dispose()

    got = asyncio.run(row())
    assert (got["description"], orjson.loads(got["tags"]), bool(got["hidden"])) == ("Hello there.", ["cheap", "fast"], False)


def test_the_error_table_matches_readme():
    from tests.test_docs import README
    from reapi.site.errors import CLIENT_ERRORS

    section = README.split("## Errors", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    for status, type_, code, _ in CLIENT_ERRORS:
        assert any(f"`{code}`" in line and line.startswith(f"| {status}") and (f"`{type_}`" in line or type_ in line)
                   for line in rows), code


def test_the_site_and_the_operator_console_are_imported_only_when_first_opened(tmp_path):
    code = ("import sys\nfrom reapi.app import create_app\nfrom reapi.settings import Settings\n"
            f"create_app(Settings(database_url='sqlite:///{tmp_path}/x.db'))\n"
            "loaded = [m for m in ('reapi.site', 'reapi.admin_console', 'reapi.web', 'jinja2') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_every_advertised_parameter_is_accepted_by_a_real_call_on_both_channel_kinds(console, upstream):
    """Each parameter of the page at its example value, one real call each, on an OpenAI channel and on a
    Claude one (whose page leaves out what the Anthropic adapter refuses)."""
    s = await priced(console, upstream)
    await console.admin("PUT", "/admin/models/claude-sonnet-4-6", {
        "input_usd_per_mtok": "3", "output_usd_per_mtok": "15", "context_window": 200000,
        "max_output_tokens": 64000}, expect=200)
    await console.admin("POST", "/admin/channels", {"name": "claude", "type": "anthropic", "base_url": upstream.url,
                                                    "api_key": UPSTREAM_KEY, "models": ["claude-sonnet-4-6"]},
                        expect=201)
    auth = {"Authorization": f"Bearer {s['key']}"}
    for model in ("gpt-5.5", "claude-sonnet-4-6"):
        _, _, body = await console.raw("GET", f"/docs/{model}?format=json")
        params = orjson.loads(body)["parameters"]
        names = {p["name"] for p in params}
        if model.startswith("claude"):
            assert not names & {"n", "logprobs", "seed", "presence_penalty"}, names
        else:
            assert {"n", "logprobs", "seed"} <= names
        for p in params:
            if p["name"] in ("model", "messages"):
                continue
            call = {"model": model, "messages": [{"role": "user", "content": "hi"}], p["name"]: p["example"]}
            if p["name"] == "stream_options":
                call["stream"] = True
            if p["name"] == "top_logprobs":
                call["logprobs"] = True
            st, _, answer = await console.raw("POST", "/v1/chat/completions", json=call, headers=auth)
            assert st == 200, (model, p["name"], answer[:300])
    assert await console.verify() == []
