"""The keys page's optional webhook URL (tasks keys only), on SQLite and PostgreSQL: it reaches the
key and the list, a chat key or a private target is refused on the page with the form kept."""
from __future__ import annotations

import json

from tests.console.test_keys import make_key


async def test_the_key_form_takes_a_webhook_url_for_tasks_keys(web, console):
    c = web()
    await c.signup("hooks@example.com")
    account_id = (await console.admin("GET", "/admin/users"))["data"][0]["account_id"]
    _, secret, page = await make_key(c, name="jobs", workspace="tasks",
                                     webhook_url="https://hooks.example.com/reapi")
    assert secret.startswith("rk_live_")
    [k] = (await console.admin("GET", f"/admin/accounts/{account_id}/keys"))["data"]
    assert k["webhook_url"] == "https://hooks.example.com/reapi"
    # the page reloaded the catalog: the key and its default serve at once
    served = console.gw.catalog.snapshot.task_keys.values()
    assert [t.webhook_url for t in served] == ["https://hooks.example.com/reapi"]
    assert "webhook: https://hooks.example.com/reapi" in page
    _, _, body = await c.get("/console/keys", params={"format": "json"})
    assert json.loads(body)["keys"][0]["webhook_url"] == "https://hooks.example.com/reapi"
    for fields, words in (({"webhook_url": "https://hooks.example.com/x"}, "tasks keys only"),
                          ({"workspace": "tasks", "webhook_url": "http://127.0.0.1:9/x"}, "private"),
                          ({"workspace": "tasks", "webhook_url": "ftp://hooks.example.com/x"}, "http")):
        status, _, body = await c.post("/console/keys", {"name": "bad", **fields})
        assert status == 400 and words in body and "webhook_url" in body, (fields, body[-800:])
        assert f'value="{fields["webhook_url"]}"' in body  # the form keeps what was typed
    assert len((await console.admin("GET", f"/admin/accounts/{account_id}/keys"))["data"]) == 1
