"""A value that validates against a JSON Schema: what the demo upstream answers for Claude's structured
outputs (``output_config.format`` / the beta ``output_format``).

Covers the subset Anthropic accepts (and what pydantic and the openai SDK emit): ``type`` (one or a
list), ``properties`` / ``required`` (every property is filled, required or not), ``items`` /
``prefixItems`` / ``minItems``, ``enum``, ``const``, ``anyOf`` / ``oneOf`` (the first branch), ``allOf``
(merged), local ``$ref`` into ``$defs`` / ``definitions``, ``default``, string ``format`` (date-time,
date, time, email, uri, uuid, ipv4, ipv6), ``minimum`` / ``maximum`` and ``minLength``. An array gets
one item down to FULL_DEPTH levels of nesting, then its minItems, so a recursive schema ends; a
nullable branch is taken past MAX_DEPTH.
"""
from __future__ import annotations

from typing import Any

FULL_DEPTH = 3  # arrays nested deeper get only their minItems
MAX_DEPTH = 32  # past it, a nullable type or branch is null
FORMATS = {"date-time": "2026-01-01T00:00:00Z", "date": "2026-01-01", "time": "12:00:00", "email": "mock@example.com",
           "uri": "https://example.com/mock", "uuid": "00000000-0000-4000-8000-000000000000",
           "ipv4": "192.0.2.1", "ipv6": "2001:db8::1", "hostname": "example.com"}


def instance(schema: Any) -> Any:
    """A value valid against `schema` (the root of its own ``$defs``)."""
    return _value(schema, schema if isinstance(schema, dict) else {}, 0)


def _resolve(ref: str, root: dict) -> Any:
    if not ref.startswith("#/"):
        return {}
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part.replace("~1", "/").replace("~0", "~")) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else {}


def _merge(parts: list) -> dict:
    out: dict = {}
    for p in parts:
        if isinstance(p, dict):
            for k, v in p.items():
                if k == "properties" and isinstance(v, dict):
                    out["properties"] = {**out.get("properties", {}), **v}
                elif k == "required" and isinstance(v, list):
                    out["required"] = [*out.get("required", []), *v]
                else:
                    out.setdefault(k, v)
    return out


def _value(schema: Any, root: dict, depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 2 * MAX_DEPTH:
        return None
    if "$ref" in schema and isinstance(schema["$ref"], str):
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        return _value(_merge([rest, _resolve(schema["$ref"], root)]), root, depth)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            if depth >= MAX_DEPTH:  # deep in a recursive schema: the null branch ends it, if there is one
                nulls = [b for b in branches if isinstance(b, dict) and b.get("type") == "null"]
                branches = nulls or branches
            return _value(_merge([{k: v for k, v in schema.items() if k != key}, branches[0]]), root, depth)
    if isinstance(schema.get("allOf"), list):
        return _value(_merge([{k: v for k, v in schema.items() if k != "allOf"}, *schema["allOf"]]), root, depth)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] if depth < MAX_DEPTH else ["null"]
        kind = kinds[0] if kinds else "null"
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        return {name: _value(sub, root, depth + 1) for name, sub in props.items()}
    if kind == "array":
        prefix = schema.get("prefixItems")
        out = [_value(s, root, depth + 1) for s in prefix] if isinstance(prefix, list) else []
        least = schema.get("minItems") if isinstance(schema.get("minItems"), int) else 0
        items = schema.get("items")
        want = max(least, 0 if depth >= FULL_DEPTH else 1)
        while isinstance(items, dict) and len(out) < want:
            out.append(_value(items, root, depth + 1))
        return out
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        n = low if isinstance(low, (int, float)) else high if isinstance(high, (int, float)) and high < 1 else 1
        return int(n) if kind == "integer" else n
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if "default" in schema:
        return schema["default"]
    text = FORMATS.get(schema.get("format"), "mock")
    least = schema.get("minLength")
    return text + "x" * (least - len(text)) if isinstance(least, int) and least > len(text) else text
