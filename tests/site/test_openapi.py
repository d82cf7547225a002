"""GET /openapi.json over real HTTP: a well-formed OpenAPI 3.1 document whose task gateway part lists
every route the task wing dispatches (reapi.tasks.paths.TASK_ROUTES), documents only error codes of
reapi.tasks.errors.CODES (each under its own HTTP status), and describes what a real gateway answers:
each documented /api/v1 operation, called with a real tasks key, is routed (never 20006) and its
errors carry codes the document lists for that operation."""
from __future__ import annotations

import re

import orjson

from reapi.tasks.demo_models import DEMO_TASK_MODELS
from reapi.tasks.errors import CODES
from reapi.tasks.paths import TASK_ROUTES
from tests.tasks.conftest import tg  # noqa: F401

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# what issue #12 asks the document to describe (a route dropped from the table fails here too)
REQUIRED = {("post", "/api/v1/images/generations"), ("post", "/api/v1/videos/generations"),
            ("post", "/api/v1/audio/generations"), ("get", "/api/v1/tasks/{id}"), ("get", "/api/v1/tasks"),
            ("post", "/api/v1/quote"), ("get", "/api/v1/models"), ("get", "/api/v1/balance"),
            ("post", "/v1/chat/completions"), ("get", "/v1/models"), ("post", "/v1/responses")}


def refs(node) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def resolve(doc: dict, ref: str):
    assert ref.startswith("#/"), ref
    node = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def problems_of(doc: dict) -> list[str]:
    """The structural rules of OpenAPI 3.1 this document must keep (no validator is in the lock)."""
    out = []
    if doc.get("openapi") != "3.1.0":
        out.append("openapi is not 3.1.0")
    if not doc.get("info", {}).get("title") or not doc["info"].get("version"):
        out.append("info needs title and version")
    schemes = doc.get("components", {}).get("securitySchemes", {})
    op_ids = []
    for path, item in doc.get("paths", {}).items():
        if not path.startswith("/"):
            out.append(f"{path}: does not start with /")
        params = set(re.findall(r"{([^}]+)}", path))
        for method, op in item.items():
            if method not in METHODS:
                out.append(f"{path}: {method} is not an HTTP method")
                continue
            op_ids.append(op.get("operationId"))
            declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
            if declared != params:
                out.append(f"{method} {path}: path parameters {declared} != {params}")
            for p in op.get("parameters", []):
                if p.get("in") not in ("path", "query", "header", "cookie") or "schema" not in p:
                    out.append(f"{method} {path}: bad parameter {p}")
                if p.get("in") == "path" and p.get("required") is not True:
                    out.append(f"{method} {path}: path parameter {p['name']} not required")
            if not op.get("responses"):
                out.append(f"{method} {path}: no responses")
            for status, r in op.get("responses", {}).items():
                if not re.fullmatch(r"[1-5]\d\d|default", status) or "description" not in r:
                    out.append(f"{method} {path}: bad response {status}")
            for sec in op.get("security", doc.get("security", [])):
                out += [f"{method} {path}: unknown scheme {s}" for s in sec if s not in schemes]
    if len(op_ids) != len(set(op_ids)) or None in op_ids:
        out.append(f"operationIds missing or repeated: {op_ids}")
    for ref in refs(doc):
        try:
            resolve(doc, ref)
        except (KeyError, AssertionError):
            out.append(f"unresolved $ref {ref}")
    return out


def codes_by_status(op: dict) -> dict[int, list[int]]:
    """status -> the task error codes the operation documents under it."""
    out = {}
    for status, r in op["responses"].items():
        schema = r.get("content", {}).get("application/json", {}).get("schema", {})
        for part in schema.get("allOf", []):
            enum = part.get("properties", {}).get("error", {}).get("properties", {}).get("code", {}).get("enum")
            if enum:
                out[int(status)] = enum
    return out


async def test_the_document_is_openapi_31_and_lists_every_task_route(tg):  # noqa: F811
    st, h, body = await tg.gw.raw("GET", "/openapi.json")
    assert st == 200 and h["content-type"] == "application/json"
    doc = orjson.loads(body)
    assert problems_of(doc) == []
    ops = {(m, p) for p, item in doc["paths"].items() for m in item}
    assert REQUIRED <= ops, REQUIRED - ops
    routed = {(r.method.lower(), r.path) for r in TASK_ROUTES}
    assert routed <= ops, routed - ops
    assert {p for _, p in ops if p.startswith("/api/v1")} == {p for _, p in routed}  # nothing made up
    assert doc["components"]["securitySchemes"]["taskKey"]["scheme"] == "bearer"
    assert "rk_live_" in doc["components"]["securitySchemes"]["taskKey"]["description"]
    # the envelope: {"error": {"code": <5 digits>, "message", "request_id"}}, every code of the errors module
    env = doc["components"]["schemas"]["TaskError"]["properties"]["error"]
    assert env["required"] == ["code", "message", "request_id"]
    assert env["properties"]["code"]["enum"] == sorted(CODES)
    for path, item in doc["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, op in item.items():
            assert op["security"] == [{"taskKey": []}], (method, path)
            documented = codes_by_status(op)
            assert documented, (method, path)
            for status, codes in documented.items():
                for c in codes:
                    assert c in CODES and CODES[c][0] == status, (method, path, status, c)
            assert documented[401] == [10001, 10002, 10003, 10004], (method, path)
    # the submit bodies are the served models' own schemas (the task gateway checks bodies against them)
    video = doc["paths"]["/api/v1/videos/generations"]["post"]["requestBody"]["content"]["application/json"]
    alts = {a["title"]: a for a in video["schema"]["oneOf"]}
    spec = DEMO_TASK_MODELS["doubao-seedance-2.0"]["params"]
    assert set(spec["properties"]) <= set(alts["doubao-seedance-2.0"]["properties"])
    assert alts["doubao-seedance-2.0"]["properties"]["model"] == {"const": "doubao-seedance-2.0"}
    image = doc["paths"]["/api/v1/images/generations"]["post"]["requestBody"]["content"]["application/json"]
    assert "oneOf" not in image["schema"]  # no image model is served by this gateway's channel


async def test_every_documented_task_operation_is_routed_and_answers_documented_codes(tg):  # noqa: F811
    doc = orjson.loads((await tg.gw.raw("GET", "/openapi.json"))[2])
    s, _, task = await tg.call("POST", "/videos/generations",
                               {"model": "doubao-seedance-2.0", "prompt": "a cat", "duration": 5})
    assert s == 200, task
    seen = 0
    for path, item in doc["paths"].items():
        if not path.startswith("/api/v1"):
            continue
        for method, op in item.items():
            real = path.replace("{id}", task["id"])[len("/api/v1"):]
            body = {} if method == "post" else None
            st, _, answer = await tg.call(method.upper(), real, body)
            code = answer["error"]["code"] if st >= 400 else None
            assert code != 20006, (method, path, answer)  # the gateway routes what the document lists
            if code is not None:
                assert code in codes_by_status(op).get(st, []), (method, path, st, code)
            st, _, answer = await tg.call(method.upper(), real, body, headers={})  # no key: documented 401
            assert (st, answer["error"]["code"]) == (401, 10001) and 10001 in codes_by_status(op)[401]
            seen += 1
    assert seen == len(TASK_ROUTES)
    # and what the document leaves out is not routed
    st, _, answer = await tg.call("GET", "/tasks/" + task["id"] + "/outputs")
    assert (st, answer["error"]["code"]) == (404, 20005)
    st, _, answer = await tg.call("GET", "/images")
    assert (st, answer["error"]["code"]) == (404, 20006)
