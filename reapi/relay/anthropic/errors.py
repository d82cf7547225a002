"""Anthropic errors (HTTP and in-stream) -> the error the client sees, scrubbed of the channel's secrets."""
from __future__ import annotations

from typing import Any

import orjson

from reapi.catalog import Channel
from reapi.errors import GatewayError
from reapi.relay.scrub import scrub

def _bad_upstream(what: str) -> GatewayError:
    return GatewayError(502, f"The upstream provider returned {what}.", type="upstream_error", code="upstream_error")


_AUTH_MESSAGE = ("The upstream provider rejected this gateway's credentials for the model. "
                 "This is not a problem with your API key; the operator has to fix the channel.")
# Anthropic error type -> (status, type, code, message or None to pass the upstream message through)
_ERRORS: dict[str, tuple[int, str, str | None, str | None]] = {
    "invalid_request_error": (400, "invalid_request_error", None, None),
    "authentication_error": (502, "upstream_error", "upstream_auth_failed", _AUTH_MESSAGE),
    "permission_error": (502, "upstream_error", "upstream_auth_failed", _AUTH_MESSAGE),
    "billing_error": (502, "upstream_error", "upstream_error",
                      "The upstream provider refused the call for a billing reason on the gateway's account."),
    "not_found_error": (502, "upstream_error", "upstream_not_found",
                        "The upstream provider does not know the model this gateway mapped the request to."),
    "request_too_large": (413, "invalid_request_error", "request_too_large",
                          "The request is larger than the upstream provider accepts."),
    "rate_limit_error": (429, "upstream_error", "upstream_rate_limited",
                         "The upstream provider is rate limiting this gateway; retry shortly."),
    "api_error": (502, "upstream_error", "upstream_error", "The upstream provider hit an internal error."),
    "overloaded_error": (503, "upstream_error", "upstream_overloaded",
                         "The upstream provider is temporarily overloaded; retry shortly."),
}
_STATUS_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    529: "overloaded_error",
}
_TYPE_STATUS = {t: s for s, t in _STATUS_TYPES.items()}
# Statuses that mean the same thing whatever the body (Cloudflare answers 413 before the API does).
_STATUS_ONLY = {413, 429, 529}


def error_from_anthropic(status: int, err_type: str | None, message: Any, channel: Channel | None) -> GatewayError:
    if not isinstance(err_type, str) or err_type not in _ERRORS:
        fallback = _STATUS_TYPES.get(status)
        if fallback is not None:
            err_type = fallback
        elif 400 <= status < 500:
            # Anthropic documents invalid_request_error as its catch-all for other 4xx statuses.
            err_type = "invalid_request_error"
        else:
            err_type = "api_error"
    out_status, out_type, code, generic = _ERRORS[err_type]
    if generic is None:
        text = message if isinstance(message, str) and message else "The upstream provider rejected the request."
        generic = scrub(text, channel)
    return GatewayError(out_status, generic, type=out_type, code=code)


def load_event(data: bytes) -> dict:
    """One SSE event's data -> its JSON object; 502 for anything else (chat and Responses streams)."""
    try:
        ev = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _bad_upstream("an unreadable stream event") from None
    if not isinstance(ev, dict):
        raise _bad_upstream("an unreadable stream event")
    return ev


def stream_error(ev: dict, channel: Channel | None) -> GatewayError:
    """An in-stream `error` event -> the client's error, its status from the Anthropic error type."""
    err = ev.get("error")
    err = err if isinstance(err, dict) else {"message": err}
    err_type = err.get("type") if isinstance(err.get("type"), str) else None
    return error_from_anthropic(_TYPE_STATUS.get(err_type, 500), err_type, err.get("message"), channel)


def load_message(raw: bytes) -> dict:
    """A 2xx Messages body -> its JSON object with a `content` list; 502 (or the error it carries) otherwise."""
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _bad_upstream("an unreadable response") from None
    if not isinstance(msg, dict):
        raise _bad_upstream("an unreadable response")
    if msg.get("type") == "error":
        err = msg.get("error")
        err = err if isinstance(err, dict) else {}
        # No channel here to scrub with: the upstream's text is not relayed, only its type's generic one.
        raise error_from_anthropic(500, err.get("type"), None, None)
    if not isinstance(msg.get("content"), list):
        raise _bad_upstream("a response without content")
    return msg
