"""Admin API edges on both stores: values the store cannot hold, channels that would break
every call, and the key listing. Each must be a 400 naming the field (or a clean 200), never a 500."""
import subprocess
import sys

import pytest

from tests.harness import UPSTREAM_KEY, Gateway, gateway_settings

HI = [{"role": "user", "content": "hi"}]
MAX_USD = "9223372036.854775807"  # 2**63 - 1 nano-USD, the largest BIGINT balance


@pytest.fixture
async def gw(store_url):
    g = await Gateway(gateway_settings(store_url)).start()
    yield g
    await g.stop()


def channel(**kw) -> dict:
    return {"name": "c", "type": "openai", "base_url": "http://127.0.0.1:9/v1", "api_key": UPSTREAM_KEY,
            "models": ["gpt-5.5"], **kw}


async def refused(gw: Gateway, method: str, path: str, body, param: str | None) -> dict:
    err = (await gw.admin(method, path, body, expect=400))["error"]
    assert err["type"] == "invalid_request_error", err
    if param is not None:
        assert err["param"] == param, err
    return err


async def test_key_listing_with_a_spend_limit_shows_money_as_strings(gw, upstream):
    # the defect: 500 once a key had a spend limit, and spent_nano as a raw integer
    s = await gw.setup(upstream, key={"spend_limit_usd": "5.00"})
    plain = await gw.admin("POST", f"/admin/accounts/{s['account_id']}/keys", {"name": "plain"}, expect=201)
    await gw.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
    rows = (await gw.admin("GET", f"/admin/accounts/{s['account_id']}/keys", expect=200))["data"]
    by_id = {r["id"]: r for r in rows}
    limited, other = by_id[s["key_id"]], by_id[plain["id"]]
    assert limited["spend_limit_usd"] == "5.00" and other["spend_limit_usd"] is None
    assert isinstance(limited["spent_usd"], str) and limited["spent_usd"] != "0.00"
    assert other["spent_usd"] == "0.00"
    for r in rows:
        assert not {"spent_nano", "spend_limit_nano", "key_hash"} & r.keys(), r
        assert r["revoked"] is False and r["created_at"].endswith("Z")
    await gw.admin("DELETE", f"/admin/keys/{plain['id']}", expect=200)
    rows = (await gw.admin("GET", f"/admin/accounts/{s['account_id']}/keys", expect=200))["data"]
    assert {r["id"]: r["revoked"] for r in rows} == {s["key_id"]: False, plain["id"]: True}


async def test_names_longer_than_the_columns_are_400(gw):
    long = "n" * 201
    await refused(gw, "POST", "/admin/accounts", {"name": long}, "name")
    await refused(gw, "POST", "/admin/channels", channel(name=long), "name")
    await refused(gw, "POST", "/admin/channels", channel(models=[long]), "models.0")
    await refused(gw, "POST", "/admin/channels", channel(groups=["x\r\ny"]), "groups.0")
    acc = await gw.admin("POST", "/admin/accounts", {"name": "n" * 200}, expect=201)
    await refused(gw, "POST", f"/admin/accounts/{acc['id']}/keys", {"name": long}, "name")
    await refused(gw, "POST", f"/admin/accounts/{acc['id']}/keys", {"models": [long]}, "models.0")
    price = {"input_usd_per_mtok": "1", "output_usd_per_mtok": "2", "context_window": 1000, "max_output_tokens": 100}
    await refused(gw, "PUT", f"/admin/models/{long}", price, "model")
    await refused(gw, "PUT", f"/admin/groups/{long}", {"rpm": 5}, "group")
    await gw.admin("PUT", f"/admin/models/{'m' * 200}", price, expect=200)
    await gw.admin("PUT", f"/admin/groups/{'g' * 200}", {"rpm": 5}, expect=200)


async def test_money_beyond_what_the_store_holds_is_400(gw):
    acc = await gw.admin("POST", "/admin/accounts", {"name": "rich"}, expect=201)
    credits = f"/admin/accounts/{acc['id']}/credits"
    await refused(gw, "POST", credits, {"amount_usd": "10000000000"}, "amount_usd")  # above BIGINT alone
    await gw.admin("POST", credits, {"amount_usd": MAX_USD}, expect=201)
    await refused(gw, "POST", credits, {"amount_usd": "0.000000001"}, "amount_usd")  # the sum would overflow
    assert await gw.balance(acc["id"]) == MAX_USD
    await refused(gw, "POST", f"/admin/accounts/{acc['id']}/keys", {"spend_limit_usd": "10000000000"},
                  "spend_limit_usd")
    price = {"input_usd_per_mtok": "1", "output_usd_per_mtok": "2", "context_window": 1000, "max_output_tokens": 100}
    await refused(gw, "PUT", "/admin/models/m", {**price, "input_usd_per_mtok": "9000000000000"},
                  "input_usd_per_mtok")
    # multipliers are 32-bit thousandths in the store
    await refused(gw, "PUT", "/admin/models/m", {**price, "long_context": {
        "threshold_tokens": 10, "input_multiplier": "3000000", "output_multiplier": "1"}},
        "long_context.input_multiplier")
    assert await gw.verify() == []


@pytest.mark.parametrize("url", [
    "http://", "https://", "http:///v1", "127.0.0.1:9000/v1", "ftp://h/v1", "http://user:pw@h/v1", "http://@h/v1",
    "http://h/v1?x=1", "http://h/v1#f", "http://h/v1?", "http://h:99999/v1", "http://h/a b", "http://h/\r\nX: y",
    "http://" + "h" * 2000 + "/v1",
])
async def test_bad_base_urls_are_400_on_create_and_patch(gw, url):
    await refused(gw, "POST", "/admin/channels", channel(base_url=url), "base_url")
    ch = await gw.admin("POST", "/admin/channels", channel(), expect=201)
    await refused(gw, "PATCH", f"/admin/channels/{ch['id']}", {"base_url": url}, "base_url")
    assert await stored_url(gw, ch["id"]) == "http://127.0.0.1:9/v1"


async def test_upstream_key_with_control_characters_is_400(gw, upstream):
    s = await gw.setup(upstream)
    for bad in ("sk-abc\r\nX-Injected: 1", "sk-abc\n", "sk abc", "sk-\x00", "ключ", ""):
        await refused(gw, "POST", "/admin/channels", channel(api_key=bad), "api_key")
        await refused(gw, "PATCH", f"/admin/channels/{s['channel_id']}", {"api_key": bad}, "api_key")
    # the channel still works with its key
    r = await gw.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
    assert r.choices[0].message.content
    ok = await gw.admin("POST", "/admin/channels", channel(base_url="https://[::1]:8443/v1/"), expect=201)
    assert await stored_url(gw, ok["id"]) == "https://[::1]:8443/v1"
    # write-only, like the key: the admin API never shows an upstream URL or host
    listed = await gw.admin("GET", "/admin/channels")
    assert "base_url" not in ok and "[::1]" not in str(listed) and "127.0.0.1" not in str(listed)


async def stored_url(gw, cid: int) -> str:
    from sqlalchemy import text

    async with gw.gw.engine.connect() as conn:
        return (await conn.execute(text("SELECT base_url FROM channels WHERE id = :i"), {"i": cid})).scalar_one()


def test_cli_refuses_what_the_admin_api_refuses(tmp_path):
    env = {"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/c.db", "PATH": "/usr/bin"}
    subprocess.run([sys.executable, "-m", "reapi", "migrate"], env=env, check=True, capture_output=True, timeout=60)
    for args in (["channels", "add", "--name", "c", "--base-url", "http://", "--api-key", "k", "--model", "m"],
                 ["channels", "add", "--name", "c", "--base-url", "http://h/v1", "--api-key", "k\r\nX: y",
                  "--model", "m"],
                 ["accounts", "create", "a" * 201]):
        out = subprocess.run([sys.executable, "-m", "reapi", *args], env=env, capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert "Invalid value" in out.stderr, out.stderr
