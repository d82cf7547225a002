"""The exact price of a task body: credits_per_unit of the first matching SKU x quantity.

quantity = the product of the model's named integer fields (each: the body's value, else the
schema default, else 1). A SKU matches when each of its `when` fields equals the body's value
(or, absent from the body, the schema default). No match -> 20001. Amounts are integer nano-USD
(1 credit = 1,000,000 nano-USD), never floats.
"""
from __future__ import annotations

from typing import Any

from reapi.billing.money import MAX_NANO
from reapi.catalog import TaskModel
from reapi.tasks.errors import TaskError
from reapi.tasks.params import default_of

_ABSENT = object()


def value_of(model: TaskModel, body: dict, field: str) -> Any:
    if field in body:
        return body[field]
    d = default_of(model.params, field)
    return _ABSENT if d is None else d


def quantity(model: TaskModel, body: dict) -> int:
    q = 1
    for field in model.quantity:
        v = value_of(model, body, field)
        if v is _ABSENT:
            v = 1
        if type(v) is not int or v < 0:
            raise TaskError(20001, f"{field}: must be a non-negative integer")
        q *= v
    return q


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def cost_nano(model: TaskModel, body: dict) -> int:
    """The exact cost of `body` in nano-USD. Raises TaskError(20001) when no SKU matches."""
    q = quantity(model, body)
    for sku in model.skus:
        if all(_same(value_of(model, body, f), want) for f, want in sku.when.items()):
            cost = sku.nano_per_unit * q
            if cost > MAX_NANO:
                raise TaskError(20001, "the request's quantity is too large to price")
            return cost
    fields = sorted({f for sku in model.skus for f in sku.when})
    raise TaskError(20001, f"{', '.join(fields) or 'body'}: no price for this combination of "
                           f"{', '.join(fields) or 'fields'} on model {model.name}")
