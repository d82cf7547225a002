"""The public site in Chromium (Playwright): the catalog, the rate card in both tiers, the docs index
and a model page render with their content, nothing wider than a phone, and the page's JSON is
the same context the HTML shows."""
from __future__ import annotations

import orjson

from tests.site.test_site import PRICE, priced


def visit(b, base: str) -> dict:
    ctx = b.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    seen: dict = {}
    try:
        page.goto(base + "/")
        seen["home_h1"] = page.locator("h1").inner_text()
        seen["home_row"] = page.locator("#model-gpt-5\\.5").inner_text()
        page.get_by_role("link", name="Pricing").first.click()
        page.wait_for_url(base + "/pricing")
        seen["base_tier"] = page.locator('tr[data-model="gpt-5.5"][data-tier="base"]').inner_text()
        seen["long_tier"] = page.locator('tr[data-model="gpt-5.5"][data-tier="long"]').inner_text()
        page.goto(base + "/docs")
        page.get_by_role("link", name="gpt-5.5").first.click()
        page.wait_for_url(base + "/docs/gpt-5.5")
        seen["samples"] = page.locator("code.sample").count()
        seen["params"] = page.locator("#parameters-table tbody tr").count()
        seen["temperature"] = page.locator('tr[data-param="temperature"]').inner_text()
        seen["example"] = page.locator("#worked-example").inner_text()
        seen["long_context"] = page.locator("#long-context").count()
        widths = {}
        for path in ("/", "/pricing", "/docs", "/docs/gpt-5.5"):
            page.goto(base + path)
            widths[path] = page.evaluate("document.body.scrollWidth")
        seen["widths"] = widths
        seen["json"] = page.evaluate("fetch('/docs/gpt-5.5?format=json').then(r => r.text())")
    finally:
        ctx.close()
    return seen


async def test_the_public_pages_in_chromium(browser, console, upstream):
    await priced(console, upstream)
    seen = await browser.run(visit, console.url)
    assert seen["home_h1"] == "Models served here"
    assert "The flagship model." in seen["home_row"] and "$5.00" in seen["home_row"]
    assert all(v in seen["base_tier"] for v in ("$5.00", "$0.50", "$6.25", "$30.00", "1,000,000"))
    assert all(v in seen["long_tier"] for v in ("$10.00", "$1.00", "$12.50", "$45.00", "272,000"))
    assert seen["samples"] == 4 and seen["params"] >= 20 and seen["long_context"] == 1
    assert "0 to 2" in seen["temperature"]
    ctx = orjson.loads(seen["json"])
    assert ctx["example"]["cost_usd"] in seen["example"]
    assert ctx["model"]["description"] == PRICE["description"]
    # the tables scroll inside their own box on a phone; the page itself does not get wider than it
    assert all(w <= 390 for w in seen["widths"].values()), seen["widths"]
