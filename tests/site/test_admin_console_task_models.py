"""The operator console's task models page over real HTTP and in Chromium: the list shows each SKU's
conditions, credits and USD exactly as reapi.tasks.pricing bills them; a saved SKU price is live at
POST /api/v1/quote; bad input comes back on the form naming the field and stores nothing; admins
only, and every POST needs its CSRF token."""
from __future__ import annotations

import html
import re

import orjson

from reapi.billing.money import format_credits, format_usd, parse_credits
from reapi.tasks.demo_models import DEMO_TASK_MODELS
from tests.console.conftest import WebClient
from tests.site.test_site import HTML
from tests.tasks.conftest import tg  # noqa: F401

ADMIN = "ops@example.com"
SEEDANCE = "doubao-seedance-2.0"
PAGE = "/admin/console/task-models"


def form_of(name: str, spec: dict, **over) -> dict:
    """The edit form's fields for a task model spec (as the page fills them)."""
    data = {"model": name, "category": spec["category"], "endpoint": "", "unit": spec["unit"],
            "quantity": ", ".join(spec["quantity"]), "max_seconds": str(spec.get("max_seconds", "")),
            "description": spec.get("description", ""), "params": orjson.dumps(spec["params"]).decode(),
            "sku_count": str(len(spec["skus"]) + 1)}
    for i, s in enumerate(spec["skus"]):
        data[f"sku_when_{i}"] = orjson.dumps(s["when"]).decode()
        data[f"sku_credits_{i}"] = s["credits_per_unit"]
    data.update(over)
    return data


async def clients(tg):  # noqa: F811
    gw = tg.gw
    await gw.admin("POST", "/admin/users", {"email": ADMIN, "password": "correct horse", "admin": True}, expect=201)
    ops = WebClient(gw.url)
    gw.clients.append(ops)
    assert (await ops.login(ADMIN))[0] in (302, 303)
    assert (await ops.get(PAGE))[0] == 200  # the signed-in session's CSRF token
    return ops


async def quote(tg, body: dict) -> dict:  # noqa: F811
    st, _, q = await tg.call("POST", "/quote", body)
    assert st == 200, q
    return q


async def test_list_shows_every_sku_as_pricing_bills_it(tg):  # noqa: F811
    ops = await clients(tg)
    st, _, page = await ops.get(PAGE, headers=HTML)
    assert st == 200
    assert 'href="/admin/console/task-models"' in page  # in the nav
    for name, spec in DEMO_TASK_MODELS.items():
        assert f'id="task-model-{name}"' in page
        for i, sku in enumerate(spec["skus"]):
            row = html.unescape(page.split(f'data-task-model="{name}" data-sku="{i}"', 1)[1].split("</tr>", 1)[0])
            nano = parse_credits(sku["credits_per_unit"])
            assert f"<td>{format_credits(nano)}</td>" in row and f"<td>${format_usd(nano)}</td>" in row, row
            for field, value in sku["when"].items():
                assert f"{field} = {orjson.dumps(value).decode()}" in row, row
    seedance_row = page.split(f'id="task-model-{SEEDANCE}"', 1)[1].split("</tr>", 1)[0]
    assert "<td>ark</td>" in seedance_row and "listed" in seedance_row
    assert "not served" in page.split('id="task-model-gpt-image-2"', 1)[1].split("</tr>", 1)[0]  # no channel
    # the same context as JSON, and a one-unit quote equals the listed SKU price
    st, _, raw = await ops.get(PAGE + "?format=json", headers=HTML)
    ctx = orjson.loads(raw)
    seed = next(m for m in ctx["models"] if m["model"] == SEEDANCE)
    q = await quote(tg, {"model": SEEDANCE, "prompt": "a cat", "duration": 4, "resolution": "1080p",
                         "generate_audio": False})
    sku = next(s for s in seed["skus"] if s["when"] == {"resolution": "1080p", "generate_audio": False})
    nano = parse_credits(sku["credits_per_unit"]) * 4
    assert q["cost_credits"] == format_credits(nano) and q["cost_usd"] == format_usd(nano), (q, sku)


async def test_editing_a_sku_price_is_live_at_quote(tg):  # noqa: F811
    ops = await clients(tg)
    body = {"model": SEEDANCE, "prompt": "a cat", "duration": 5, "resolution": "720p", "generate_audio": True}
    assert (await quote(tg, body))["cost_credits"] == "600"  # 120 per second x 5
    st, _, page = await ops.get(f"{PAGE}?model={SEEDANCE}", headers=HTML)
    assert st == 200 and 'value="120"' in page and 'id="t-sku-credits-3"' in page
    i = next(i for i, s in enumerate(DEMO_TASK_MODELS[SEEDANCE]["skus"])
             if s["when"] == {"resolution": "720p", "generate_audio": True})
    st, h, text = await ops.post(PAGE, form_of(SEEDANCE, DEMO_TASK_MODELS[SEEDANCE], **{f"sku_credits_{i}": "133.5"}))
    assert st in (302, 303), text[:500]
    q = await quote(tg, body)
    assert q["cost_credits"] == "667.5" and q["cost_usd"] == format_usd(667_500_000), q
    listed = (await tg.gw.admin("GET", "/admin/task-models"))["data"]
    assert next(m for m in listed if m["model"] == SEEDANCE)["skus"][i]["credits_per_unit"] == "133.5"
    _, _, page = await ops.get(PAGE, headers=HTML)
    row = page.split(f'data-task-model="{SEEDANCE}" data-sku="{i}"', 1)[1].split("</tr>", 1)[0]
    assert "<td>133.5</td>" in row and "<td>$0.1335</td>" in row, row
    # a new model from the blank form
    spec = DEMO_TASK_MODELS["mureka-v9-song"]
    st, _, text = await ops.post(PAGE, form_of("my-song", spec, sku_credits_0="70"))
    assert st in (302, 303), text[:500]
    listed = (await tg.gw.admin("GET", "/admin/task-models"))["data"]
    assert next(m for m in listed if m["model"] == "my-song")["skus"] == [{"when": {}, "credits_per_unit": "70"}]


async def test_bad_input_is_shown_on_the_form_naming_the_field_and_nothing_is_stored(tg):  # noqa: F811
    ops = await clients(tg)
    before = (await tg.gw.admin("GET", "/admin/task-models"))["data"]
    spec = DEMO_TASK_MODELS[SEEDANCE]
    bad_schema = dict(spec["params"], properties=dict(spec["params"]["properties"], seed={"type": "bogus"}))
    cases = [
        ({"params": orjson.dumps(bad_schema).decode()}, "params"),
        ({"params": "{not json"}, "params"),
        ({"sku_credits_0": "-5"}, "skus.0.credits_per_unit"),
        ({"sku_credits_0": "lots"}, "skus.0.credits_per_unit"),
        ({"sku_when_1": '{"colour": "red"}'}, "skus.1.when"),
        ({"quantity": "duration, frames"}, "quantity"),
        ({"unit": "parsec"}, "unit"),
        ({"params": orjson.dumps(dict(spec["params"], frobnicate=1)).decode()}, "params"),
    ]
    for over, field in cases:
        st, _, text = await ops.post(PAGE, form_of(SEEDANCE, spec, **over))
        assert st == 400, (over, st, text[:300])
        err = html.unescape(re.search(r'id="form-error">([^<]*)<', text).group(1))
        assert err.startswith(field), (over, err)
        assert 'id="task-model-form"' in text and f'value="{html.escape(over.get("sku_credits_0", "48"))}"' in text
    assert (await tg.gw.admin("GET", "/admin/task-models"))["data"] == before


async def test_customers_get_403_and_a_post_needs_csrf(tg):  # noqa: F811
    ops = await clients(tg)
    customer = WebClient(tg.gw.url)
    tg.gw.clients.append(customer)
    await customer.signup("customer@example.com")
    assert (await customer.get(PAGE))[0] == 403
    assert (await customer.post(PAGE, form_of("x", DEMO_TASK_MODELS["mureka-v9-song"])))[0] == 403
    st, _, _ = await ops.post(PAGE, form_of("x", DEMO_TASK_MODELS["mureka-v9-song"], csrf_token="wrong"))
    assert st == 403
    assert "x" not in {m["model"] for m in (await tg.gw.admin("GET", "/admin/task-models"))["data"]}


def change_a_price(b, base: str, model: str, label: str, value: str) -> dict:
    page = b.new_context().new_page()
    seen: dict = {}
    try:
        page.goto(base + "/login?next=/admin/console/task-models")
        page.get_by_label("E-mail").fill(ADMIN)
        page.get_by_label("Password").fill("correct horse")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(base + PAGE)
        page.get_by_role("link", name=f"Edit {model}").click()
        page.wait_for_url(re.compile(r".*/admin/console/task-models\?model=.*"))
        seen["before"] = page.get_by_label(label, exact=True).input_value()
        page.get_by_label(label, exact=True).fill(value)
        page.get_by_role("button", name="Save task model").click()
        page.wait_for_url(base + PAGE + "?done=saved")
        seen["flash"] = page.locator(".flash.ok").inner_text()
        seen["skus"] = page.locator("#task-skus").inner_text()
    finally:
        page.context.close()
    return seen


async def test_an_admin_changes_a_task_price_in_chromium(browser, tg):  # noqa: F811
    await tg.gw.admin("POST", "/admin/users", {"email": ADMIN, "password": "correct horse", "admin": True},
                      expect=201)
    seen = await browser.run(change_a_price, tg.gw.url, SEEDANCE, "SKU 4 credits per unit", "125")
    assert seen["before"] == "120"
    assert "Task model saved." in seen["flash"]
    assert "resolution = \"720p\", generate_audio = true\t125\t$0.125" in seen["skus"], seen["skus"]
    q = await quote(tg, {"model": SEEDANCE, "prompt": "a cat", "duration": 4, "resolution": "720p"})
    assert q["cost_credits"] == "500"
