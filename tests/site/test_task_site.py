"""The task models on the public site over real HTTP: /pricing's SKUs as the task gateway bills them,
/docs/{model} built from the model's JSON Schema with its submit + poll samples run against a gateway
with a worker in front of the demo upstream, the catalog on / and in /llms.txt."""
from __future__ import annotations

import asyncio
import html
import os
import sys

import orjson

from reapi.billing.money import format_credits, format_usd
from reapi.tasks.demo_models import DEMO_TASK_MODELS
from reapi.tasks.errors import CODES
from tests.site.test_site import HTML, parse, run
from tests.tasks.conftest import tg  # noqa: F401

SEEDANCE = "doubao-seedance-2.0"


def _nano(credits: str) -> int:
    from decimal import Decimal

    return int(Decimal(credits) * 1_000_000)


async def test_pricing_lists_every_served_task_sku_and_json_is_unchanged(tg):  # noqa: F811
    gw = tg.gw
    _, _, api_before = await gw.raw("GET", "/pricing")
    st, _, body = await gw.raw("GET", "/pricing", headers=HTML)
    assert st == 200
    page = body.decode()
    assert 'id="task-rate-card"' in page and "1,000 credits = 1 USD" in page
    for i, sku in enumerate(DEMO_TASK_MODELS[SEEDANCE]["skus"]):
        row = page.split(f'data-task-model="{SEEDANCE}" data-sku="{i}"', 1)[1].split("</tr>", 1)[0]
        nano = _nano(sku["credits_per_unit"])
        assert f"<td>{format_credits(nano)}</td>" in row and f"<td>${format_usd(nano)}</td>" in row, row
        for field, value in sku["when"].items():
            assert f"{field} = {orjson.dumps(value).decode()}" in html.unescape(row), row
    # a task model no channel serves is not advertised
    assert 'data-task-model="gpt-image-2"' not in page and 'data-task-model="mureka-v9-song"' not in page
    # API clients get the same JSON as before, without task models
    for headers in ({}, {"Accept": "application/json"}, {"Accept": "*/*"}):
        _, _, api = await gw.raw("GET", "/pricing", headers=headers)
        assert api == api_before
    assert SEEDANCE.encode() not in api_before


async def test_task_docs_page_samples_run_and_the_example_price_is_billed(tg, tmp_path):  # noqa: F811
    gw = tg.gw
    st, _, body = await gw.raw("GET", f"/docs/{SEEDANCE}", headers=HTML)
    assert st == 200
    page = body.decode()
    assert f"POST {gw.url}/api/v1/videos/generations" in page and "rk_live_" in page
    blocks = parse(page)
    assert {"parameters-table", "sku-table", "errors-table"} <= set(blocks.tables)
    props = DEMO_TASK_MODELS[SEEDANCE]["params"]["properties"]
    for name, schema in props.items():
        row = page.split(f'data-param="{name}"', 1)[1].split("</tr>", 1)[0]
        if "default" in schema:
            assert f"<td>{orjson.dumps(schema['default']).decode()}</td>" in html.unescape(row), row
        for k in ("minimum", "maximum"):
            if k in schema:
                assert f"{k[:3]} {schema[k]}" in row, row
        for v in schema.get("enum", ()):
            assert f"<code>{v}</code>" in row, row
    for code in CODES:
        assert f"<code>{code}</code>" in page
    # worked example: 5 s (the default duration) at 480p without audio = 5 x 48 credits
    assert "240 credits ($0.24)" in page
    samples = {a.get("data-lang"): html.unescape(c) for a, c in blocks.codes if "sample" in a.get("class", "")}
    assert set(samples) == {"curl", "python"}
    env = {**os.environ, "REAPI_API_KEY": tg.key}
    before = await tg.tasks_credits()
    out = await run(["bash", "-c", samples["curl"]], env=env, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    task = orjson.loads(out.stdout.splitlines()[-1])
    assert task["status"] == "completed" and task["model"] == SEEDANCE, task
    assert task["cost_credits"] == "240", task
    script = tmp_path / "task.py"
    script.write_text(samples["python"])
    out = await run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr
    task2 = orjson.loads(out.stdout)
    assert task2["status"] == "completed" and task2["id"] != task["id"], task2
    after = await tg.tasks_credits()
    from decimal import Decimal

    assert Decimal(before) - Decimal(after) == Decimal("0.48"), (before, after)
    assert await gw.verify() == []


async def test_task_models_on_home_docs_index_and_llms_txt(tg):  # noqa: F811
    gw = tg.gw
    _, _, body = await gw.raw("GET", "/", headers=HTML)
    page = body.decode()
    video = page.split('id="category-video"', 1)[1].split("</section>", 1)[0]
    assert f'href="/docs/{SEEDANCE}"' in video and "48 credits ($0.048) per second" in video
    _, _, body = await gw.raw("GET", "/docs", headers=HTML)
    assert f'href="/docs/{SEEDANCE}"' in body.decode()
    st, h, body = await gw.raw("GET", "/llms.txt")
    text = body.decode()
    assert st == 200 and "## Task models" in text
    assert f"- [{SEEDANCE}]({gw.url}/docs/{SEEDANCE}):" in text and "POST /api/v1/videos/generations" in text
    st, _, _ = await gw.raw("GET", "/docs/gpt-image-2", headers=HTML)
    assert st == 404  # defined but no channel serves it


async def test_every_demo_task_model_page_runs_its_curl_sample_and_bills_its_example(tg):  # noqa: F811
    """The demo's three task models, one per category and per upstream kind (Ark, OpenAI images,
    reAPI tasks): each page's curl sample completes and is charged the page's worked example."""
    from decimal import Decimal

    from tests.harness import UPSTREAM_KEY

    gw = tg.gw
    for name, (typ, path, models) in {"images": ("openai-images", "/v1", ["gpt-image-2"]),
                                      "songs": ("reapi-tasks", "/api/v1", ["mureka-v9-song"])}.items():
        await gw.admin("POST", "/admin/channels", {"name": name, "type": typ, "base_url": tg.upstream.url + path,
                                                   "api_key": UPSTREAM_KEY, "models": models}, expect=201)
    _, _, body = await gw.raw("GET", "/pricing", headers=HTML)
    pricing = body.decode()
    _, _, body = await gw.raw("GET", "/", headers=HTML)
    home = body.decode()
    env = {**os.environ, "REAPI_API_KEY": tg.key}
    for name, spec in DEMO_TASK_MODELS.items():
        assert pricing.count(f'data-task-model="{name}"') == len(spec["skus"]), name
        section = home.split(f'id="category-{spec["category"]}"', 1)[1].split("</section>", 1)[0]
        assert f'href="/docs/{name}"' in section, name
        st, _, body = await gw.raw("GET", f"/docs/{name}", headers=HTML)
        assert st == 200, name
        page = body.decode()
        worked = html.unescape(page.split('id="worked-example">', 1)[1].split("</p>", 1)[0])
        credits = worked.split("<strong>", 1)[1].split(" credits", 1)[0]
        curl = next(html.unescape(c) for a, c in parse(page).codes if a.get("data-lang") == "curl")
        before = Decimal(await tg.tasks_credits())
        out = await run(["bash", "-c", curl], env=env, capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, (name, out.stderr)
        task = orjson.loads(out.stdout.splitlines()[-1])
        assert task["status"] == "completed" and task["cost_credits"] == credits, (name, task)
        assert before - Decimal(await tg.tasks_credits()) == Decimal(credits) / 1000, name
    assert await gw.verify() == []


async def test_a_hidden_task_model_leaves_the_public_pages_but_still_takes_tasks(tg):  # noqa: F811
    """PUT /admin/task-models/{model} with `hidden` (and `tags`): gone from /, /pricing, /docs and
    /llms.txt, its page 404, while submits and quotes still work; unhidden it comes back with its tags."""
    gw, name = tg.gw, SEEDANCE
    spec = next({k: v for k, v in m.items() if k != "model"}
                for m in (await gw.admin("GET", "/admin/task-models"))["data"] if m["model"] == name)
    out = await gw.admin("PUT", f"/admin/task-models/{name}", {**spec, "hidden": True, "tags": ["fast", "t2v"]},
                         expect=200)
    assert out["hidden"] is True and out["tags"] == ["fast", "t2v"]
    await asyncio.sleep(1.2)  # the catalog reload (REAPI_CONFIG_POLL_MS)
    for path in ("/", "/pricing", "/docs"):
        _, _, body = await gw.raw("GET", path, headers=HTML)
        assert name not in body.decode(), path
    _, _, body = await gw.raw("GET", "/llms.txt")
    assert name not in body.decode()
    st, _, _ = await gw.raw("GET", f"/docs/{name}", headers=HTML)
    assert st == 404
    st, _, body = await gw.raw("POST", "/api/v1/quote", json={"model": name, "prompt": "a fox", "duration": 5},
                               headers={"Authorization": f"Bearer {tg.key}"})
    assert st == 200, body
    await gw.admin("PUT", f"/admin/task-models/{name}", {**spec, "tags": ["fast", "t2v"]}, expect=200)
    await asyncio.sleep(1.2)
    st, _, body = await gw.raw("GET", f"/docs/{name}", headers={"Accept": "application/json"})
    assert st == 200 and orjson.loads(body)["model"]["tags"] == ["fast", "t2v"]
