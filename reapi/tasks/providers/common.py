"""What every provider checks the same way: JSON answers, upstream ids, output URLs, errors."""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import orjson

from reapi.catalog import Channel
from reapi.relay.scrub import scrub
from reapi.tasks.providers.base import TaskUpstreamError

UPSTREAM_ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
MAX_OUTPUT_URL = 4096


def json_object(raw: bytes, what: str) -> dict:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TaskUpstreamError(50002, f"the upstream's {what} answer is not JSON", transient=True) from None
    if not isinstance(data, dict):
        raise TaskUpstreamError(50002, f"the upstream's {what} answer is not a JSON object", transient=True)
    return data


def maybe_json_object(raw: bytes) -> dict | None:
    """An error answer's JSON object, or None when it is not one (the error is then built from the status)."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def upstream_id(value: Any) -> str:
    if not isinstance(value, str) or not UPSTREAM_ID.fullmatch(value):
        raise TaskUpstreamError(50002, "the upstream answered without a valid task id", transient=False)
    return value


def output_url(value: Any) -> str | None:
    """An http(s) URL of an output file, or None for anything else."""
    if not isinstance(value, str) or len(value) > MAX_OUTPUT_URL or any(c <= " " for c in value):
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    return value if parts.scheme in ("http", "https") and parts.hostname else None


def progress(value: Any) -> int | None:
    return value if type(value) is int and 0 <= value <= 100 else None


def error_of(channel: Channel, status: int, data: dict | None) -> TaskUpstreamError:
    """A non-2xx answer: 429 and 5xx are transient (retry later); 401/403 (the gateway's own upstream
    key) are transient too (the channel cools down, the task waits for another); other 4xx reject
    the task (50003) with the upstream's reason, scrubbed."""
    message = ""
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            message = err.get("message") or err.get("code") or ""
        elif isinstance(err, str):
            message = err
        message = message or data.get("message") or ""
    message = scrub(message, channel, limit=500) if message else f"upstream answered HTTP {status}"
    if status == 429:
        return TaskUpstreamError(50002, "upstream rate limited", transient=True)
    if status >= 500 or status in (401, 403, 408):
        return TaskUpstreamError(50002, f"upstream unavailable (HTTP {status})", transient=True)
    return TaskUpstreamError(50003, message, transient=False)
