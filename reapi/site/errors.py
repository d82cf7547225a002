"""The error table of the model pages: the errors a /v1 client can get, as data. Every code here is
a row of README's "Errors" section (tests/site/test_site.py checks status and code against it)."""
from __future__ import annotations

# (status, type, code, when)
CLIENT_ERRORS: tuple[tuple[int, str, str, str], ...] = (
    (400, "invalid_request_error", "invalid_value", "a bad body; `param` names the field"),
    (400, "invalid_request_error", "unknown_parameter", "a field the API does not know"),
    (400, "invalid_request_error", "missing_required_parameter", "no `model` or no `messages`"),
    (400, "invalid_request_error", "invalid_group", "an unknown `group`"),
    (400, "invalid_request_error", "unsupported_parameter", "a parameter a Claude channel cannot honour"),
    (401, "invalid_request_error", "invalid_api_key", "a missing, unknown, expired or revoked key"),
    (402, "insufficient_quota", "insufficient_balance", "the balance cannot pay the prompt and some output"),
    (402, "insufficient_quota", "key_spend_limit_reached", "the key's spend limit is used up"),
    (403, "permission_error", "model_not_allowed", "the key is restricted to other models"),
    (404, "invalid_request_error", "model_not_found", "an unknown model, or none served in the group"),
    (413, "invalid_request_error", "request_too_large", "the body is too large"),
    (429, "requests", "rate_limit_exceeded", "a rate limit; see `retry-after`"),
    (502, "upstream_error", "upstream_error", "the upstream failed (not charged; safe to retry)"),
    (504, "upstream_error", "upstream_timeout", "the upstream did not answer in time (not charged)"),
)


def error_rows() -> list[dict]:
    return [{"status": s, "type": t, "code": c, "when": w} for s, t, c, w in CLIENT_ERRORS]
