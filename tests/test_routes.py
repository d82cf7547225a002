"""The route table: every response carries exactly one x-request-id, each sub-application
answers in its own error format, and the public routes live outside the admin app."""
from __future__ import annotations

import gc
import re
import subprocess
import sys

import orjson
import pytest

from tests.harness import ADMIN_KEY

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
RID = re.compile(r"^req_[0-9a-f]{16}[0-9a-f]{8,}$")


async def fetch(gw, method: str, path: str, **kw):
    async with gw.http.request(method, gw.url + path, **kw) as r:
        ids = r.headers.getall("x-request-id", [])
        assert len(ids) == 1 and RID.match(ids[0]), (method, path, ids)
        return r.status, ids[0], r.headers.get("content-type", ""), await r.read()


@pytest.mark.parametrize("method,path,headers,status", [
    ("GET", "/admin/channels", ADMIN, 200),
    ("GET", "/admin/channels", {}, 401),
    ("GET", "/admin/accounts/5", ADMIN, 404),
    ("GET", "/pricing", {}, 200),
    ("GET", "/healthz", {}, 200),
    ("HEAD", "/healthz", {}, 200),
    ("GET", "/readyz", {}, 200),
    ("GET", "/metrics", {}, 200),
    ("GET", "/docs", {}, 200),
    ("GET", "/openapi.json", {}, 200),
    ("GET", "/admin/docs", {}, 200),
    ("GET", "/admin/openapi.json", {}, 200),
    ("GET", "/", {}, 200),
    ("GET", "/llms.txt", {}, 200),
    ("GET", "/docs/no-such-model", {}, 404),
    ("GET", "/nowhere", {}, 404),
    ("GET", "/admin", {}, 404),
    ("GET", "/v1/models", {}, 401),
    ("GET", "/v1/nowhere", {}, 404),
    ("GET", "/v1/chat/completions", {}, 405),
    ("POST", "/v1/chat/completions", {}, 401),
    ("POST", "/v1/messages", {}, 401),
    ("GET", "/v1/messages", {}, 405),
    ("POST", "/healthz", {}, 405),
])
async def test_every_route_answers_with_one_request_id(gateway, method, path, headers, status):
    got, _, _, _ = await fetch(gateway, method, path, headers=headers)
    assert got == status


async def test_ids_differ_per_response(gateway):
    ids = {(await fetch(gateway, "GET", p))[1] for p in ("/healthz", "/healthz", "/pricing", "/nowhere")}
    assert len(ids) == 4


async def test_each_sub_app_answers_in_its_own_error_format(gateway):
    def openai_error(body: bytes) -> dict:
        err = orjson.loads(body)["error"]
        assert set(err) == {"message", "type", "param", "code"}, err
        return err

    _, _, ctype, body = await fetch(gateway, "GET", "/v1/nowhere")
    assert ctype == "application/json" and openai_error(body)["code"] == "unknown_url"
    _, _, _, body = await fetch(gateway, "GET", "/v1/chat/completions")
    assert openai_error(body)["code"] == "method_not_allowed"
    _, _, _, body = await fetch(gateway, "GET", "/nowhere")
    assert openai_error(body)["code"] == "not_found"
    _, _, _, body = await fetch(gateway, "GET", "/admin/nowhere", headers=ADMIN)
    assert openai_error(body)["code"] == "not_found"
    _, _, _, body = await fetch(gateway, "GET", "/admin/channels")
    assert openai_error(body)["code"] == "invalid_admin_key"
    _, _, _, body = await fetch(gateway, "POST", "/metrics")
    assert openai_error(body)["code"] == "method_not_allowed"
    # Anthropic's envelope under /v1/messages, with the request id in the body too
    status, rid, _, body = await fetch(gateway, "POST", "/v1/messages/nowhere")
    doc = orjson.loads(body)
    assert status == 404 and doc["type"] == "error" and doc["error"]["type"] == "not_found_error"
    assert doc["request_id"] == rid


async def test_public_routes_are_not_behind_the_admin_key_and_not_in_the_admin_app(gateway):
    status, _, ctype, body = await fetch(gateway, "GET", "/pricing")
    assert status == 200 and ctype == "application/json"
    assert orjson.loads(body) == {"object": "list", "currency": "USD", "unit": "per 1M tokens", "data": []}
    status, _, ctype, body = await fetch(gateway, "GET", "/metrics")
    assert ctype.startswith("text/plain") and b"reapi_" in body
    status, _, _, body = await fetch(gateway, "HEAD", "/readyz")
    assert status == 200 and body == b""
    _, _, _, body = await fetch(gateway, "GET", "/admin/openapi.json")
    paths = orjson.loads(body)["paths"]
    assert "/admin/channels" in paths and "/admin/accounts/{account_id}/keys" in paths
    assert not {"/pricing", "/healthz", "/readyz", "/metrics"} & paths.keys()
    _, _, _, body = await fetch(gateway, "GET", "/openapi.json")  # the public API's document
    paths = orjson.loads(body)["paths"]
    assert "/v1/chat/completions" in paths and not any(p.startswith("/admin") for p in paths)


async def test_hot_routes_carry_their_calls_id_once(gateway, upstream):
    s = await gateway.setup(upstream)
    auth = {"Authorization": f"Bearer {s['key']}"}
    body = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
    status, rid, _, _ = await fetch(gateway, "POST", "/v1/chat/completions", json=body, headers=auth)
    assert status == 200
    status, srid, _, raw = await fetch(gateway, "POST", "/v1/chat/completions", json={**body, "stream": True},
                                       headers=auth)
    assert status == 200 and raw.endswith(b"data: [DONE]\n\n")
    # the id a client sees is the call's own: the one in its usage record
    assert {rid, srid} <= {u["request_id"] for u in await gateway.usage(s["account_id"])}
    status, _, _, raw = await fetch(gateway, "GET", "/v1/models", headers=auth)
    assert status == 200 and [m["id"] for m in orjson.loads(raw)["data"]] == ["gpt-5.5"]
    status, _, _, raw = await fetch(gateway, "GET", "/v1/models/gpt-5.5", headers=auth)
    assert status == 200 and orjson.loads(raw)["id"] == "gpt-5.5"
    status, _, _, raw = await fetch(gateway, "GET", "/v1/models/nope", headers=auth)
    assert status == 404 and orjson.loads(raw)["error"]["code"] == "model_not_found"
    # an Anthropic-format call (no Claude channel serves gpt-5.5 there: Anthropic's 404, with the id)
    status, mrid, _, raw = await fetch(gateway, "POST", "/v1/messages", headers={"x-api-key": s["key"]},
                                       json={"model": "gpt-5.5", "max_tokens": 5,
                                             "messages": [{"role": "user", "content": "hi"}]})
    assert status == 404 and orjson.loads(raw)["request_id"] == mrid


def test_the_serving_process_starts_without_the_admin_frameworks_or_alembic(tmp_path):
    """Issue #15 (memory): FastAPI and pydantic come with the admin API on its first call, alembic
    only in `reapi migrate` (which `reapi serve` runs in a child process)."""
    code = ("import sys\nfrom reapi.app import create_app\nfrom reapi.settings import Settings\n"
            f"create_app(Settings(database_url='sqlite:///{tmp_path}/x.db'))\n"
            "loaded = [m for m in ('fastapi', 'pydantic', 'alembic') if m in sys.modules]\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)



async def test_a_running_gateway_makes_full_collections_rare(gateway):
    """Issue #15 (streams): a full gc pass walks every live object (100-320 ms with 5,000 streams open);
    a started gateway has frozen what it loaded and runs one per FULL_GC_EVERY middle passes, not 10."""
    from reapi.gateway import FULL_GC_EVERY

    assert gc.get_threshold()[2] == FULL_GC_EVERY > 10
    assert gc.get_freeze_count() > 0
