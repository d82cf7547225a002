"""The accepted fields of a task model: a small, bounded JSON Schema subset, and the check of a body.

A model's `params` is {"type": "object", "properties": {field: schema}, "required": [...]}; a field
schema may use type (string | integer | boolean | array | object), enum, minimum, maximum,
minLength, maxLength, minItems, maxItems, items, properties/required (objects inside arrays),
format ("uri": an http(s) URL), default and description. Nothing else: an operator's schema with
any other keyword is refused when the model is set, so what is checked is always what is written.

Every field whose name ends in _url or _urls, and every "uri" string, must be an http(s) URL with a
host: data: URIs and base64 media are refused (20001), as reAPI does.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from reapi.tasks.errors import TaskError, invalid, missing

TYPES = ("string", "integer", "boolean", "array", "object")
KEYWORDS = {"type", "enum", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "items",
            "properties", "required", "format", "default", "description"}
MAX_DEPTH = 4  # nesting of array items and objects in a schema (and so in a checked body)
MAX_PROPERTIES = 200
MAX_URL = 2048
INT_BOUND = 2**53  # integers beyond this are refused (JSON readers disagree past it)


class SchemaError(ValueError):
    """An operator's params schema outside the subset; the message names the path."""


def check_schema(schema: Any) -> dict:
    """`schema` if it is a supported top-level schema, else SchemaError."""
    if not isinstance(schema, dict) or schema.get("type") != "object" or not isinstance(
            schema.get("properties"), dict):
        raise SchemaError('params must be {"type": "object", "properties": {...}}')
    if "model" in schema["properties"]:
        raise SchemaError("params.properties must not name `model` (it is always required)")
    _check(schema, "params", 0)
    return schema


def _check(s: Any, path: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SchemaError(f"{path}: nested deeper than {MAX_DEPTH} levels")
    if not isinstance(s, dict):
        raise SchemaError(f"{path}: must be an object")
    unknown = set(s) - KEYWORDS
    if unknown:
        raise SchemaError(f"{path}: unsupported keyword {sorted(unknown)[0]}")
    t = s.get("type")
    if t not in TYPES:
        raise SchemaError(f"{path}.type: must be one of {', '.join(TYPES)}")
    for k in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"):
        if k in s and (type(s[k]) is not int or abs(s[k]) > INT_BOUND):
            raise SchemaError(f"{path}.{k}: must be an integer")
    if "enum" in s and (not isinstance(s["enum"], list) or not s["enum"] or len(s["enum"]) > 1000):
        raise SchemaError(f"{path}.enum: must be a list of 1 to 1000 values")
    if "format" in s and s["format"] != "uri":
        raise SchemaError(f"{path}.format: only \"uri\" is supported")
    if t == "array":
        if "items" not in s:
            raise SchemaError(f"{path}.items: an array needs an items schema")
        _check(s["items"], path + ".items", depth + 1)
    if t == "object":
        props = s.get("properties")
        if not isinstance(props, dict) or len(props) > MAX_PROPERTIES:
            raise SchemaError(f"{path}.properties: an object needs at most {MAX_PROPERTIES} properties")
        for name, sub in props.items():
            _check(sub, f"{path}.properties.{name}", depth + 1)
        req = s.get("required", [])
        if not isinstance(req, list) or any(r not in props for r in req):
            raise SchemaError(f"{path}.required: must list properties")
    if "default" in s:
        try:
            check_value(s, s["default"], path + ".default", depth)
        except TaskError as exc:
            raise SchemaError(exc.message) from None


def validate(schema: dict, body: dict) -> dict:
    """The body's fields checked against the model's schema; raises TaskError 20001 (invalid or
    unknown field, the message naming it) or 20002 (missing)."""
    check_value(schema, body, "", 0)
    return body


def _is_url_field(name: str) -> bool:
    return name.endswith(("_url", "_urls")) or name in ("url", "image", "video", "audio")


def check_value(s: dict, v: Any, path: str, depth: int, url: bool = False) -> None:
    t = s["type"]
    name = path or "body"
    if t == "object":
        if not isinstance(v, dict):
            raise invalid(name, "must be an object")
        props = s["properties"]
        for k in v:
            if k not in props:
                raise invalid(_join(path, k), "unknown parameter")
        for k in s.get("required", []):
            if k not in v:
                raise missing(_join(path, k))
        for k, sub in v.items():
            check_value(props[k], sub, _join(path, k), depth + 1, _is_url_field(k))
        return
    if t == "array":
        if not isinstance(v, list):
            raise invalid(name, "must be an array")
        if "maxItems" in s and len(v) > s["maxItems"]:
            raise invalid(name, f"must have at most {s['maxItems']} items")
        if "minItems" in s and len(v) < s["minItems"]:
            raise invalid(name, f"must have at least {s['minItems']} items")
        for i, item in enumerate(v):
            check_value(s["items"], item, f"{name}[{i}]", depth + 1, url)
        return
    if t == "string":
        if not isinstance(v, str):
            raise invalid(name, "must be a string")
        if "maxLength" in s and len(v) > s["maxLength"]:
            raise invalid(name, f"must be at most {s['maxLength']} characters")
        if "minLength" in s and len(v) < s["minLength"]:
            raise invalid(name, f"must be at least {s['minLength']} characters")
        if url or s.get("format") == "uri":
            check_media_url(name, v)
    elif t == "integer":
        if type(v) is not int:
            raise invalid(name, "must be an integer")
        if abs(v) > INT_BOUND:
            raise invalid(name, "is out of range")
        if "minimum" in s and v < s["minimum"]:
            raise invalid(name, f"must be at least {s['minimum']}")
        if "maximum" in s and v > s["maximum"]:
            raise invalid(name, f"must be at most {s['maximum']}")
    elif t == "boolean":
        if type(v) is not bool:
            raise invalid(name, "must be true or false")
    if "enum" in s and not any(type(e) is type(v) and e == v for e in s["enum"]):
        shown = ", ".join(str(e) for e in s["enum"][:20])
        raise invalid(name, f"must be one of {shown}")


def check_media_url(name: str, v: str) -> None:
    """A media input: an http(s) URL with a host; data: URIs and base64 are refused."""
    if len(v) > MAX_URL:
        raise invalid(name, f"must be a URL of at most {MAX_URL} characters")
    if any(c <= " " or c == "\x7f" for c in v):
        raise invalid(name, "must be an http(s) URL (no spaces or control characters)")
    try:
        parts = urlsplit(v)
        parts.port
    except ValueError:
        raise invalid(name, "must be an http(s) URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise invalid(name, "must be a public http(s) URL; data: URIs and base64 inputs are not accepted")


def _join(path: str, k: str) -> str:
    return f"{path}.{k}" if path else k


def default_of(schema: dict, field: str) -> Any:
    """The schema default of a top-level field, or None."""
    return schema["properties"].get(field, {}).get("default")
