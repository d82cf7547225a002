"""The API keys page and key expiry, on SQLite and PostgreSQL: create (shown once), list, use
with the openai SDK, revoke, another user's key is 404, an expired key is 401 at /v1."""
from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime, timedelta, timezone

import openai
import pytest

NEW_KEY = re.compile(r'id="new-key-value" data-key-id="(\d+)">([^<]+)<')


async def make_key(c, **fields) -> tuple[int, str, str]:
    await c.get("/console/keys")
    status, _, body = await c.post("/console/keys", {"name": "k", **fields})
    assert status == 201, body
    m = NEW_KEY.search(body)
    return int(m.group(1)), m.group(2), body


async def test_a_key_made_on_the_page_works_with_the_openai_sdk_then_revoked_is_refused(web, console):
    c = web()
    await c.signup("keys@example.com")
    account_id = (await console.admin("GET", "/admin/users"))["data"][0]["account_id"]
    await console.admin("POST", f"/admin/accounts/{account_id}/credits", {"amount_usd": "5.00"}, expect=201)
    key_id, secret, page = await make_key(c, name="laptop", spend_limit_usd="1.50")
    assert secret.startswith("sk-") and page.count(secret) == 1
    status, _, listing = await c.get("/console/keys")
    assert secret not in listing  # shown once: never again
    assert f"…{secret[-4:]}" in listing and "laptop" in listing and "$0.00 / $1.50" in listing
    client = console.client(secret)
    reply = await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content
    _, _, body = await c.get("/console/keys", params={"format": "json"})
    [row] = json.loads(body)["keys"]
    assert row["last_used_at"] is not None and row["spent_usd"] != "0.00" and row["last4"] == secret[-4:]
    status, _, body = await c.post(f"/console/keys/{key_id}/revoke", {})
    assert status == 200 and "revoked" in body
    with pytest.raises(openai.AuthenticationError) as err:
        await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "invalid_api_key"
    assert await console.verify() == []


async def test_key_fields_reach_the_key_and_bad_ones_are_refused(web, console):
    c = web()
    await c.signup("fields@example.com")
    account_id = (await console.admin("GET", "/admin/users"))["data"][0]["account_id"]
    day = (datetime.now(timezone.utc) + timedelta(days=30)).date().isoformat()
    await make_key(c, name="scoped", group="default", models="gpt-5.5, other-model", spend_limit_usd="2",
                   expires_at=day)
    _, tasks_secret, _ = await make_key(c, name="jobs", workspace="tasks")
    assert tasks_secret.startswith("rk_live_")
    keys = {k["name"]: k for k in (await console.admin("GET", f"/admin/accounts/{account_id}/keys"))["data"]}
    assert keys["scoped"]["groups"] == ["default"] and keys["scoped"]["models"] == ["gpt-5.5", "other-model"]
    assert keys["scoped"]["spend_limit_usd"] == "2.00" and keys["scoped"]["expires_at"] == f"{day}T00:00:00.000Z"
    assert keys["jobs"]["workspace"] == "tasks"
    with pytest.raises(openai.AuthenticationError):  # a tasks key opens nothing at /v1
        await console.client(tasks_secret).chat.completions.create(model="gpt-5.5", messages=[
            {"role": "user", "content": "hi"}])
    for fields, words in (({"spend_limit_usd": "lots"}, "spend_limit_usd"),
                          ({"expires_at": "2001-01-01"}, "future"),
                          ({"expires_at": "someday"}, "expires_at"),
                          ({"workspace": "video"}, "workspace"),
                          ({"name": "x" * 201}, "name")):
        status, _, body = await c.post("/console/keys", {"name": "bad", **fields})
        assert status == 400 and words in body, (fields, body[-800:])
    assert len((await console.admin("GET", f"/admin/accounts/{account_id}/keys"))["data"]) == 2


async def test_another_users_key_is_not_found(web, console):
    alice, bob = web(), web()
    await alice.signup("alice@example.com")
    await bob.signup("bob@example.com")
    key_id, secret, _ = await make_key(alice, name="alice-key")
    _, _, bobs = await bob.get("/console/keys")
    assert "alice-key" not in bobs
    status, _, body = await bob.post(f"/console/keys/{key_id}/revoke", {})
    assert status == 404 and "no such key" in body
    for other in ("999999", "0", "2147483648", "99999999999", "-1", "abc"):  # no such key, or no such id
        status, _, _ = await bob.post(f"/console/keys/{other}/revoke", {})
        assert status == 404, other
    assert secret.startswith("sk-")
    _, _, mine = await alice.get("/console/keys", params={"format": "json"})
    assert json.loads(mine)["keys"][0]["revoked"] is False


async def test_an_expired_key_gets_401_at_the_api_without_a_catalog_reload(console):
    acc = await console.admin("POST", "/admin/accounts", {"name": "exp"}, expect=201)
    await console.admin("POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "1.00"}, expect=201)
    soon = (datetime.now(timezone.utc) + timedelta(seconds=2)).isoformat()
    k = await console.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"name": "short", "expires_at": soon},
                            expect=201)
    assert k["expires_at"].startswith(soon[:19])
    client = console.client(k["key"])
    await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    version = console.gw.catalog.snapshot.version
    await asyncio.sleep(2.2)
    assert console.gw.catalog.snapshot.version == version  # the same snapshot: the check is at auth
    with pytest.raises(openai.AuthenticationError) as err:
        await client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "invalid_api_key" and "expired" in err.value.message
    bad = await console.admin("POST", f"/admin/accounts/{acc['id']}/keys", {"expires_at": "2000-01-01"}, expect=400)
    assert bad["error"]["param"] == "expires_at"
    assert await console.verify() == []


def test_cli_keys_accept_an_expiry(tmp_path):
    from click.testing import CliRunner

    from reapi.cli import main

    runner = CliRunner(env={"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/k.db"})
    assert runner.invoke(main, ["migrate"]).exit_code == 0
    assert runner.invoke(main, ["accounts", "create", "acme"]).exit_code == 0
    r = runner.invoke(main, ["keys", "create", "1", "--expires", "2999-01-01"])
    assert r.exit_code == 0 and "sk-" in r.output, r.output
    r = runner.invoke(main, ["keys", "create", "1", "--expires", "1999-01-01"])
    assert r.exit_code == 2 and "--expires" in r.output and "future" in r.output
