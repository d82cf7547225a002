"""The task gateway's rate card: one function turns an operator's task model into the stored row.

A task model: category (image | video | audio), endpoint (the submit route: images | videos |
audio; default from the category), unit, quantity (integer fields multiplied together), skus
([{"when": {...}, "credits_per_unit": "50"}], first match wins), params (a JSON Schema subset of
the accepted body fields, see reapi.tasks.params), max_seconds (the deadline; default 30 min for
video, 5 min for images, 10 min for audio) and a description. Credits are decimal strings
(1,000 credits = 1 USD), stored as integer nano-USD.
"""
from __future__ import annotations

from typing import Any, Literal, Mapping

import orjson
from pydantic import Field, StrictBool, StrictInt, StrictStr

from reapi.billing.money import MAX_NANO, MoneyError, format_credits, parse_credits
from reapi.errors import bad_request
from reapi.operations.inputs import Money, Name, NameIn, Strict, Tag, checked
from reapi.store import queries

CATEGORY_ENDPOINT = {"image": "images", "video": "videos", "audio": "audio"}
DEFAULT_MAX_SECONDS = {"image": 300, "video": 1800, "audio": 600}
Scalar = StrictStr | StrictInt | StrictBool


class SkuIn(Strict):
    when: dict[Name, Scalar] = Field(default_factory=dict, max_length=16)
    credits_per_unit: Money


class TaskModelIn(Strict):
    category: Literal["image", "video", "audio"]
    endpoint: Literal["images", "videos", "audio"] | None = None
    unit: Literal["image", "second", "generation", "song", "minute", "request"]
    quantity: list[Name] = Field(default_factory=list, max_length=8)
    skus: list[SkuIn] = Field(min_length=1, max_length=1000)
    params: dict[str, Any]
    max_seconds: int | None = Field(default=None, ge=1, le=7 * 86400)
    description: str | None = Field(default=None, max_length=2000)
    tags: list[Tag] | None = Field(default=None, max_length=20)
    hidden: bool = False  # left out of the public catalog (the model still takes tasks)


def task_model_row(**spec: Any) -> dict:
    """The stored row of one task model. Raises GatewayError(400) naming the field."""
    from reapi.tasks.params import SchemaError, check_schema  # not at start-up: the chat path never needs it

    m = checked(TaskModelIn, **spec)
    try:
        params = check_schema(m.params)
    except SchemaError as exc:
        raise bad_request(str(exc), param="params") from None
    props = params["properties"]
    for f in m.quantity:
        if props.get(f, {}).get("type") != "integer":
            raise bad_request(f"quantity: {f} must be an integer property of params", param="quantity")
    skus = []
    for i, sku in enumerate(m.skus):
        for f in sku.when:
            if f not in props:
                raise bad_request(f"skus.{i}.when: {f} is not a property of params", param=f"skus.{i}.when")
        try:
            nano = parse_credits(sku.credits_per_unit, f"skus.{i}.credits_per_unit")
        except MoneyError as exc:
            raise bad_request(str(exc), param=f"skus.{i}.credits_per_unit") from None
        if nano > MAX_NANO // 10**6:
            raise bad_request(f"skus.{i}.credits_per_unit is too large", param=f"skus.{i}.credits_per_unit")
        skus.append({"when": sku.when, "nano_per_unit": nano})
    return {"category": m.category, "endpoint": m.endpoint or CATEGORY_ENDPOINT[m.category], "unit": m.unit,
            "quantity": orjson.dumps(m.quantity).decode(), "skus": orjson.dumps(skus).decode(),
            "params": orjson.dumps(params).decode(),
            "max_seconds": m.max_seconds or DEFAULT_MAX_SECONDS[m.category], "description": m.description,
            "tags": orjson.dumps(sorted(set(m.tags))).decode() if m.tags else None, "hidden": m.hidden}


async def set_task_model(conn, model: str, **spec: Any) -> dict:
    """Create or replace a task model; returns the stored row."""
    checked(NameIn, {"name": "model"}, name=model)
    row = task_model_row(**spec)
    await queries.put_task_model(conn, model, row)
    return {"name": model, **row}


def task_model_view(r: Mapping[str, Any]) -> dict:
    """A stored task model as the admin API shows it: credits as decimal strings."""
    return {"model": r["name"], "category": r["category"], "endpoint": r["endpoint"], "unit": r["unit"],
            "quantity": orjson.loads(r["quantity"]),
            "skus": [{"when": s["when"], "credits_per_unit": format_credits(s["nano_per_unit"])}
                     for s in orjson.loads(r["skus"])],
            "params": orjson.loads(r["params"]), "max_seconds": r["max_seconds"], "description": r["description"],
            "tags": orjson.loads(r["tags"]) if r.get("tags") else [], "hidden": bool(r.get("hidden"))}
