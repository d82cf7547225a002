"""The rate card: one function turns an operator's decimal strings into the stored row."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from reapi.billing.money import format_multiplier, format_rate
from reapi.errors import GatewayError, bad_request
from reapi.operations import money
from reapi.operations.inputs import ModelIn, NameIn, checked
from reapi.store import queries

Money = str | int


def price_row(*, input_usd_per_mtok: Money, output_usd_per_mtok: Money,
              cached_input_usd_per_mtok: Money | None = None, cache_write_usd_per_mtok: Money | None = None,
              context_window: int, max_output_tokens: int,
              long_context: Mapping[str, Any] | None = None, aliases: Sequence[str] | None = None,
              description: str | None = None, category: str | None = None, tags: Sequence[str] | None = None,
              hidden: bool | None = None) -> dict:
    """The stored row of one model's price. `long_context` is
    {threshold_tokens, input_multiplier, output_multiplier} or None; `aliases` the model's extra
    names (stored as a sorted JSON list, None when there are none). The public catalog's fields
    (`description`, `category`, `tags`, `hidden`) are in the row only when given: None keeps the
    stored value. Raises GatewayError(400)."""
    p = checked(ModelIn, input_usd_per_mtok=input_usd_per_mtok, output_usd_per_mtok=output_usd_per_mtok,
                cached_input_usd_per_mtok=cached_input_usd_per_mtok,
                cache_write_usd_per_mtok=cache_write_usd_per_mtok, context_window=context_window,
                max_output_tokens=max_output_tokens, long_context=long_context,
                aliases=list(aliases) if aliases is not None else None, description=description,
                category=category, tags=list(tags) if tags is not None else None, hidden=hidden)

    def optional(value: Money | None, param: str) -> int | None:
        return None if value is None else money.rate(value, param)

    row = {"input_micro": money.rate(p.input_usd_per_mtok, "input_usd_per_mtok"),
           "output_micro": money.rate(p.output_usd_per_mtok, "output_usd_per_mtok"),
           "cached_input_micro": optional(p.cached_input_usd_per_mtok, "cached_input_usd_per_mtok"),
           "cache_write_micro": optional(p.cache_write_usd_per_mtok, "cache_write_usd_per_mtok"),
           "context_window": p.context_window, "max_output_tokens": p.max_output_tokens,
           "lc_threshold_tokens": None, "lc_input_milli": None, "lc_output_milli": None,
           "aliases": orjson.dumps(sorted(set(p.aliases))).decode() if p.aliases else None}
    if p.description is not None:
        row["description"] = p.description.strip() or None
    if p.category is not None:
        row["category"] = p.category
    if p.tags is not None:
        row["tags"] = orjson.dumps(sorted(set(p.tags))).decode() if p.tags else None
    if p.hidden is not None:
        row["hidden"] = p.hidden
    lc = p.long_context
    if lc is not None:
        row.update(lc_threshold_tokens=lc.threshold_tokens,
                   lc_input_milli=money.multiplier(lc.input_multiplier, "long_context.input_multiplier"),
                   lc_output_milli=money.multiplier(lc.output_multiplier, "long_context.output_multiplier"))
    return row


def alias_conflict(name: str, owner: str) -> GatewayError:
    what = "a model" if name == owner else f"an alias of model '{owner}'"
    return GatewayError(409, f"The name '{name}' is already {what}; a model's name and aliases must be "
                             "unique across the rate card.", type="invalid_request_error", param="aliases",
                        code="model_name_taken")


async def check_names(conn: AsyncConnection, model: str, aliases: list[str]) -> None:
    """409 when `model` or one of its aliases is already another model's name or alias."""
    if model in aliases:
        raise bad_request(f"aliases: '{model}' is the model's own name.", param="aliases")
    taken = await queries.model_names(conn)  # name -> the model it belongs to
    for name in (model, *aliases):
        owner = taken.get(name)
        if owner is not None and owner != model:
            raise alias_conflict(name, owner)


async def set_price(conn: AsyncConnection, model: str, **price: Any) -> dict:
    """Create or replace `model`'s price (keyword arguments of price_row, `aliases` included: a PUT
    replaces them too); returns the stored row."""
    checked(NameIn, {"name": "model"}, name=model)
    row = price_row(**price)
    await check_names(conn, model, aliases_of(row))
    await queries.put_model(conn, model, row)
    return await queries.get_model(conn, model)  # type: ignore[return-value]  # the whole row, catalog fields too


def model_view(r: Mapping[str, Any]) -> dict:
    """A stored model row as the admin API shows it: its price (price_view) and its public catalog entry."""
    return {**price_view(r), "description": r.get("description"), "category": r.get("category") or "chat",
            "tags": orjson.loads(r["tags"]) if r.get("tags") else [], "hidden": bool(r.get("hidden"))}


def aliases_of(row: Mapping[str, Any]) -> list[str]:
    raw = row.get("aliases")
    return orjson.loads(raw) if raw else []


def price_view(r: Mapping[str, Any]) -> dict:
    """A stored price row as the admin API and /pricing show it: decimal strings."""
    lc = None
    if r["lc_threshold_tokens"] is not None:
        lc = {"threshold_tokens": r["lc_threshold_tokens"],
              "input_multiplier": format_multiplier(r["lc_input_milli"]),
              "output_multiplier": format_multiplier(r["lc_output_milli"])}

    def opt(v: int | None) -> str | None:
        return None if v is None else format_rate(v)

    return {"model": r["name"], "input_usd_per_mtok": format_rate(r["input_micro"]),
            "output_usd_per_mtok": format_rate(r["output_micro"]),
            "cached_input_usd_per_mtok": opt(r["cached_input_micro"]),
            "cache_write_usd_per_mtok": opt(r["cache_write_micro"]),
            "context_window": r["context_window"], "max_output_tokens": r["max_output_tokens"],
            "long_context": lc, "aliases": aliases_of(r)}
