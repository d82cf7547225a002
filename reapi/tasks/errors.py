"""The task gateway's errors: {"error": {"code": <5 digits>, "message", "request_id"}}.

The leading digit is the category: 1 auth, 2 request, 3 money, 4 rate limit, 5 gateway/upstream.
A failed task carries the same object (without request_id) under `error`.
"""
from __future__ import annotations

import orjson

# code -> (HTTP status, what it means); README's Errors section lists the same rows.
CODES: dict[int, tuple[int, str]] = {
    10001: (401, "missing Authorization header"),
    10002: (401, "Authorization is not a Bearer token"),
    10003: (401, "invalid API key (a chat sk- key included)"),
    10004: (401, "revoked API key"),
    20001: (400, "invalid parameter (the message names the field)"),
    20002: (400, "missing parameter"),
    20003: (404, "unknown model, or no channel serves it"),
    20004: (409, "Idempotency-Key reused with a different body"),
    20005: (404, "no such task (or not this account's)"),
    20006: (404, "unknown route, or wrong method"),
    20007: (413, "request body too large"),
    30001: (402, "insufficient credits"),
    40001: (429, "rate limited (retry-after)"),
    50001: (500, "internal error"),
    50002: (502, "upstream unavailable"),
    50003: (502, "upstream rejected the task"),
    50004: (504, "upstream timeout"),
    50005: (504, "task deadline passed"),
}


class TaskError(Exception):
    def __init__(self, code: int, message: str, *, headers: dict[str, str] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or CODES[code][0]
        self.headers = headers or {}

    def body(self, request_id: str) -> bytes:
        return orjson.dumps({"error": {"code": self.code, "message": self.message, "request_id": request_id}})


def invalid(field: str, why: str) -> TaskError:
    return TaskError(20001, f"{field}: {why}")


def missing(field: str) -> TaskError:
    return TaskError(20002, f"{field}: required parameter is missing")
