"""The task gateway's part of the public OpenAPI document: every route of
reapi.tasks.paths.TASK_ROUTES (the table /api/v1 dispatches from), its rk_live_ bearer key, its
error envelope with the codes of reapi.tasks.errors.CODES, the task object's statuses from
reapi.tasks.queries.PUBLIC_STATUS, and each submit endpoint's body from the JSON Schema of the
task models served there (reapi.operations.task_models.CATEGORY_ENDPOINT says which category goes
where)."""
from __future__ import annotations

from reapi.catalog import TaskModel
from reapi.operations.task_models import CATEGORY_ENDPOINT
from reapi.tasks.errors import CODES
from reapi.tasks.paths import TASK_ROUTES
from reapi.tasks.queries import PUBLIC_STATUS

AUTH_CODES = (10001, 10002, 10003, 10004)
EVERY_ROUTE = (*AUTH_CODES, 40001, 50001)  # 20006 (no such route) is in the envelope's enum
# the codes each route can answer beyond EVERY_ROUTE (an answer's codes; 50002-50005 only ever
# appear on a failed task's `error`)
ROUTE_CODES: dict[str, tuple[int, ...]] = {
    "submit": (20001, 20002, 20003, 20004, 20007, 30001),
    "quote": (20001, 20002, 20003, 20007),
    "list_tasks": (20001,),
    "get_task": (20005,),
    "deliveries": (20005,),
    "list_models": (), "balance": (), "webhook_secret": (), "rotate_secret": (),
}
TASK_ONLY_CODES = tuple(c for c in sorted(CODES) if c >= 50002)

_FREE = {"type": "object", "additionalProperties": True}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def error_responses(handler: str) -> dict:
    """One response per HTTP status, its `code` limited to the codes that status carries here."""
    by_status: dict[int, list[int]] = {}
    for code in sorted({*EVERY_ROUTE, *ROUTE_CODES[handler]}):
        by_status.setdefault(CODES[code][0], []).append(code)
    out = {}
    for status, codes in sorted(by_status.items()):
        out[str(status)] = {
            "description": "; ".join(f"{c}: {CODES[c][1]}" for c in codes),
            "content": {"application/json": {"schema": {"allOf": [_ref("TaskError"), {
                "type": "object", "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "integer", "enum": codes}}}}}]}}}}
    return out


def schemas() -> dict:
    statuses = sorted(set(PUBLIC_STATUS.values()))
    return {
        "TaskError": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message", "request_id"], "properties": {
                "code": {"type": "integer", "enum": sorted(CODES),
                         "description": "5 digits; the first is the category (1 auth, 2 request, 3 money, "
                                        "4 rate limit, 5 gateway/upstream)"},
                "message": {"type": "string"},
                "request_id": {"type": "string", "description": "also the x-request-id header"}}}}},
        "Task": {"type": "object", "required": ["id", "model", "status", "created_at"], "properties": {
            "id": {"type": "string", "pattern": "^task_[0-9A-HJKMNP-TV-Z]{26}$"},
            "model": {"type": "string"},
            "status": {"type": "string", "enum": statuses},
            "created_at": {"type": "integer", "description": "unix seconds"},
            "output": {"anyOf": [_FREE, {"type": "null"}],
                       "description": "image_urls, video_urls or audio_urls (and last_frame_url), reapi's own URLs"},
            "error": {"anyOf": [{"type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "integer", "enum": sorted(CODES)}, "message": {"type": "string"}}},
                {"type": "null"}]},
            "cost_credits": {"type": "string", "description": "1,000 credits = 1 USD"},
            "progress": {"type": ["integer", "null"]},
            "completed_at": {"type": ["integer", "null"]},
            "expires_at": {"type": ["integer", "null"]}}},
        "Submitted": {"type": "object", "required": ["id", "model", "status", "created_at"], "properties": {
            "id": {"type": "string"}, "model": {"type": "string"},
            "status": {"type": "string", "const": PUBLIC_STATUS["queued"]}, "created_at": {"type": "integer"}}},
        "TaskList": {"type": "object", "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": _ref("Task")},
            "has_more": {"type": "boolean"}, "last_id": {"type": ["string", "null"]}}},
        "Quote": {"type": "object", "properties": {
            "model": {"type": "string"}, "cost_credits": {"type": "string"}, "cost_usd": {"type": "string"},
            "unit": {"type": "string"}, "quantity": {"type": "integer"}}},
        "Balance": {"type": "object", "properties": {
            "object": {"const": "balance"}, "credits": {"type": "string"}, "usd": {"type": "string"}}},
    }


def submit_body(endpoint: str, models: list[TaskModel]) -> dict:
    """One alternative per task model served at this endpoint (its own JSON Schema plus `model`
    and our `webhook_url`); any object naming a model when none is served."""
    categories = [c for c, e in CATEGORY_ENDPOINT.items() if e == endpoint]
    ours = {"webhook_url": {"type": ["string", "null"], "format": "uri",
                            "description": "ours, never sent upstream; absent: the key's default; null: none"}}
    alts = []
    for m in models:
        if m.endpoint != endpoint:
            continue
        props = {"model": {"const": m.name}, **(m.params.get("properties") or {}), **ours}
        alts.append({"title": m.name, "type": "object", "required": ["model", *(m.params.get("required") or ())],
                     "properties": props, "additionalProperties": False})
    generic = {"type": "object", "required": ["model"],
               "properties": {"model": {"type": "string"}, **ours}, "additionalProperties": True,
               "description": f"the default endpoint of categories: {', '.join(categories) or 'none'}"}
    return {"oneOf": alts} if alts else generic


_OK: dict[str, tuple[str, dict]] = {
    "submit": ("The task, stored and its cost held", _ref("Submitted")),
    "quote": ("The exact cost", _ref("Quote")),
    "list_tasks": ("A page of tasks", _ref("TaskList")),
    "get_task": ("The task", _ref("Task")),
    "deliveries": ("The task's deliveries and their attempts", _FREE),
    "list_models": ("The task models", _FREE),
    "balance": ("The tasks wallet", _ref("Balance")),
    "webhook_secret": ("The signing secret", _FREE),
    "rotate_secret": ("The new signing secret", _FREE),
}

_QUERY = [{"name": "status", "in": "query", "required": False,
           "schema": {"type": "string", "enum": sorted(set(PUBLIC_STATUS.values()))}},
          {"name": "limit", "in": "query", "required": False,
           "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
          {"name": "after", "in": "query", "required": False, "schema": {"type": "string"},
           "description": "the last_id of the previous page"}]


def paths(models: list[TaskModel]) -> dict:
    out: dict[str, dict] = {}
    for r in TASK_ROUTES:
        desc, schema = _OK[r.handler]
        op: dict = {"summary": r.summary, "operationId": f"task_{r.handler}_{r.path.split('/')[3]}"
                    if r.handler == "submit" else f"task_{r.handler}", "tags": ["tasks"],
                    "security": [{"taskKey": []}],
                    "responses": {"200": {"description": desc, "content": {"application/json": {"schema": schema}}},
                                  **error_responses(r.handler)}}
        if "{id}" in r.path:
            op["parameters"] = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
        if r.handler == "list_tasks":
            op["parameters"] = _QUERY
        if r.handler in ("submit", "quote"):
            endpoint = r.path.split("/")[3] if r.handler == "submit" else None
            body = submit_body(endpoint, models) if endpoint else {"type": "object", "required": ["model"],
                                                                   "additionalProperties": True}
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
        if r.handler == "submit":
            op["parameters"] = [{"name": "Idempotency-Key", "in": "header", "required": False,
                                 "schema": {"type": "string", "minLength": 1, "maxLength": 255}}]
        out.setdefault(r.path, {})[r.method.lower()] = op
    return out
