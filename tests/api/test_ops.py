"""Channel health through the gateway, and the operational routes."""
import asyncio

import openai
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import UPSTREAM_KEY, Gateway, gateway_settings

HI = [{"role": "user", "content": "hi"}]


async def test_failing_channel_is_skipped_then_comes_back(upstream, sqlite_url):
    gw = await Gateway(gateway_settings(sqlite_url, channel_failures=3, channel_cooldown_s=1)).start()
    try:
        s = await gw.setup(upstream)
        dead = await gw.admin("POST", "/admin/channels", {
            "name": "dead", "type": "openai", "base_url": "http://127.0.0.1:1/v1", "api_key": UPSTREAM_KEY,
            "models": ["gpt-5.5"]}, expect=201)
        client = gw.client(s["key"])
        outcomes = []
        for _ in range(30):
            try:
                await client.chat.completions.create(model="gpt-5.5", messages=HI)
                outcomes.append("ok")
            except openai.InternalServerError as e:
                assert e.code == "upstream_unreachable"
                outcomes.append("fail")
        # K failures open the breaker; on a slow machine the 1 s cool-down may end once and
        # its single probe fail too, but never more
        assert outcomes.count("fail") in (3, 4)
        assert outcomes[-10:] == ["ok"] * 10
        health = (await gw.admin("GET", f"/admin/channels/{dead['id']}"))["health"]
        assert health["state"] == "open"
        # the operator fixes the channel; after the cool-down one probe closes the breaker
        await gw.admin("PATCH", f"/admin/channels/{dead['id']}", {"base_url": upstream.url + "/v1"}, expect=200)
        await asyncio.sleep(1.1)
        for _ in range(20):
            await client.chat.completions.create(model="gpt-5.5", messages=HI)
        health = (await gw.admin("GET", f"/admin/channels/{dead['id']}"))["health"]
        assert health["state"] == "closed"
        probe = await gw.admin("POST", f"/admin/channels/{dead['id']}/test", expect=200)
        assert probe["ok"] is True
        assert await gw.verify() == []
    finally:
        await gw.stop()


async def test_health_ready_metrics_and_pricing(gateway, upstream):
    s = await gateway.setup(upstream)
    await gateway.client(s["key"]).chat.completions.create(model="gpt-5.5", messages=HI)
    st, _, body = await gateway.raw("GET", "/healthz")
    assert st == 200
    st, _, body = await gateway.raw("GET", "/readyz")
    assert st == 200 and b'"store":"ok"' in body
    st, _, body = await gateway.raw("GET", "/metrics")
    fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
    reqs = [smp for smp in fams["reapi_requests"].samples if smp.name == "reapi_requests_total"]
    assert any(smp.labels == {"model": "gpt-5.5", "group": "default", "status": "200"} and smp.value >= 1
               for smp in reqs)
    st, _, body = await gateway.raw("GET", "/pricing")
    assert st == 200 and b'"input_usd_per_mtok":"5.00"' in body and b'"threshold_tokens":272000' in body


async def test_admin_requires_key(gateway):
    st, _, body = await gateway.raw("GET", "/admin/channels")
    assert st == 401 and b"invalid_admin_key" in body
    st, _, body = await gateway.raw("GET", "/admin/channels", headers={"Authorization": "Bearer wrong"})
    assert st == 401
    bad = await gateway.admin("POST", "/admin/accounts/1/credits", {"amount_usd": 1.5})
    assert bad["error"]["param"] == "amount_usd"
    st, _, _ = await gateway.raw("GET", "/admin/docs")
    assert st == 200


async def test_admin_refuses_integers_the_store_cannot_hold(store_url):
    # PostgreSQL INTEGER is 32-bit: such values must be a 400 naming the field, not a 500.
    gw = await Gateway(gateway_settings(store_url)).start()
    try:
        for path, body, param in [
            ("/admin/groups/default", {"tpm": 10_000_000_000}, "tpm"),
            ("/admin/groups/default", {"total_rpm": 2**31}, "total_rpm"),
        ]:
            err = (await gw.admin("PUT", path, body, expect=400))["error"]
            assert err["param"] == param and err["type"] == "invalid_request_error", err
        err = (await gw.admin("GET", "/admin/accounts/99999999999", expect=400))["error"]
        assert err["type"] == "invalid_request_error"
        ok = await gw.admin("PUT", "/admin/groups/default", {"tpm": 2**31 - 1}, expect=200)
        assert ok["tpm"] == 2**31 - 1
    finally:
        await gw.stop()
