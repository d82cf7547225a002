"""Task models and prices: the task gateway's rate card (each SKU's conditions, credits and USD per
unit, exactly as reapi.tasks.pricing bills them), the channel types that serve each model, and one
form per model (plus a new-model form) that calls ops.set_task_model, the function behind
PUT /admin/task-models/{model}. Validation errors are shown on the form, naming the field."""
from __future__ import annotations

from typing import Any, get_args

import orjson

from reapi.admin_console.common import integer, listed, named, opt, read, write
from reapi.billing.money import format_credits, format_usd
from reapi.errors import GatewayError, bad_request
from reapi.operations.task_models import CATEGORY_ENDPOINT, TaskModelIn, set_task_model
from reapi.store import queries
from reapi.web import Request, Response, redirect, render

CATEGORIES = tuple(CATEGORY_ENDPOINT)  # the form's choices, as the operation allows them
ENDPOINTS = tuple(CATEGORY_ENDPOINT.values())
UNITS = get_args(TaskModelIn.model_fields["unit"].annotation)
MAX_SKUS = 1000
MAX_JSON = 64_000  # characters of one JSON field


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


def _view(r: dict, served_by: dict[str, set[str]]) -> dict:
    skus = [{"when": s["when"], "conditions": ", ".join(f"{k} = {_json(v)}" for k, v in s["when"].items()),
             "credits_per_unit": format_credits(s["nano_per_unit"]), "usd_per_unit": format_usd(s["nano_per_unit"])}
            for s in orjson.loads(r["skus"])]
    types = sorted(served_by.get(r["name"], ()))
    return {"model": r["name"], "category": r["category"], "endpoint": r["endpoint"], "unit": r["unit"],
            "quantity": orjson.loads(r["quantity"]), "skus": skus, "params": orjson.loads(r["params"]),
            "max_seconds": r["max_seconds"], "description": r["description"], "channel_types": types,
            "tags": orjson.loads(r["tags"]) if r.get("tags") else [], "hidden": bool(r.get("hidden")),
            "served": bool(types)}


def _form_of(m: dict) -> dict:
    return {"model": m["model"], "category": m["category"], "endpoint": m["endpoint"], "unit": m["unit"],
            "quantity": ", ".join(m["quantity"]), "max_seconds": m["max_seconds"],
            "description": m["description"] or "", "tags": ", ".join(m["tags"]), "hidden": m["hidden"], "params": orjson.dumps(m["params"], option=orjson.OPT_INDENT_2).decode(),
            "skus": [{"when": _json(s["when"]), "credits": s["credits_per_unit"]} for s in m["skus"]]}


def _served_by(req: Request) -> dict[str, set[str]]:
    """Model name -> the types of the enabled channels that serve it (no URL, no key)."""
    out: dict[str, set[str]] = {}
    for (_, model), tiers in req.gateway.catalog.snapshot.task_pools.items():
        for tier in tiers:
            for ch in tier:
                out.setdefault(model, set()).add(ch.type)
    return out


async def show(req: Request, *, form: dict | None = None, error: str | None = None, status: int = 200) -> Response:
    served = _served_by(req)
    models = [_view(r, served) for r in await read(req, queries.list_task_models)]
    editing = req.query.get("model")
    if form is None:
        current = next((m for m in models if m["model"] == editing), None)
        form = _form_of(current) if current else {"skus": []}
    form = dict(form, skus=list(form.get("skus", [])) + [{"when": "", "credits": ""}])  # one blank row to add a SKU
    notice = "Task model saved." if req.query.get("done") == "saved" else None
    return render(req, "admin/task_models.html", {
        "title": "Task models", "models": models, "error": error, "notice": notice, "_form": form,
        "_categories": CATEGORIES, "_endpoints": ENDPOINTS, "_units": UNITS}, status=status)


def _parsed(raw: str, field: str) -> Any:
    if len(raw) > MAX_JSON:
        raise bad_request(f"{field} is too long", param=field)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request(f"{field}: not valid JSON", param=field) from None


def _skus(f) -> tuple[list[dict], list[dict]]:
    """The SKU rows of the form (blank rows dropped): as the operation takes them, and as typed."""
    count = integer(f.get("sku_count"), 0)
    if not isinstance(count, int) or not 0 <= count <= MAX_SKUS + 1:
        raise bad_request("sku_count is out of range", param="sku_count")
    spec, typed = [], []
    for i in range(count):
        when, credits = (f.get(f"sku_when_{i}") or "").strip(), (f.get(f"sku_credits_{i}") or "").strip()
        if not when and not credits:
            continue
        typed.append({"when": when, "credits": credits})
        n = len(spec)
        parsed = _parsed(when, f"skus.{n}.when") if when else {}
        spec.append({"when": parsed, "credits_per_unit": credits})
    return spec, typed


async def save(req: Request) -> Response:
    f = await req.form()
    form = {k: f.get(k, "") for k in ("model", "category", "endpoint", "unit", "quantity", "max_seconds",
                                       "description", "tags", "params")}
    form["hidden"] = f.get("hidden") == "on"
    form["skus"] = []
    try:
        skus, form["skus"] = _skus(f)
        spec: dict[str, Any] = {"category": f.get("category", ""), "unit": f.get("unit", ""),
                                "quantity": listed(f.get("quantity")),
                                "skus": skus, "params": _parsed(f.get("params") or "", "params")}
        if opt(f.get("endpoint")):
            spec["endpoint"] = f.get("endpoint", "").strip()
        if opt(f.get("max_seconds")):
            spec["max_seconds"] = integer(f.get("max_seconds"))
        if opt(f.get("description")):
            spec["description"] = f.get("description", "").strip()
        spec["tags"] = listed(f.get("tags"))
        spec["hidden"] = form["hidden"]
        await write(req, set_task_model, (f.get("model") or "").strip(), **spec)
    except GatewayError as err:
        return await show(req, form=form, error=named(err), status=err.status)
    return redirect("/admin/console/task-models?done=saved")
