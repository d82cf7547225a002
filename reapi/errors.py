"""The one error type the gateway raises on purpose, and its OpenAI-shaped envelope.

Anything raised on a request path that is not a GatewayError is a bug: the HTTP
layer answers it with a generic 500 envelope and logs the traceback server-side,
so no stack trace or secret ever reaches a client.
"""
from __future__ import annotations

import orjson


class GatewayError(Exception):
    """An error answered to the client as `{"error": {message, type, param, code}}`."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> bytes:
        return envelope(self.message, self.type, self.param, self.code)

    def __repr__(self) -> str:
        return f"GatewayError({self.status}, {self.message!r}, type={self.type!r}, param={self.param!r}, code={self.code!r})"


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def bad_request(message: str, param: str | None = None, code: str | None = None) -> GatewayError:
    return GatewayError(400, message, type="invalid_request_error", param=param, code=code)


INTERNAL_ERROR = GatewayError(
    500, "The gateway hit an internal error. The call was not charged; it is safe to retry.",
    type="server_error", code="internal_error",
)
# The same error when the call's hold could not be released (its money is not closed: the sweeper
# releases it later), or when the call was already charged: neither may claim "not charged".
UNRECORDED_ERROR = GatewayError(
    500, "The gateway hit an internal error while recording this call; the amount held for it is "
         "released automatically if the call was not recorded.", type="server_error", code="internal_error",
)
CHARGED_ERROR = GatewayError(
    500, "The gateway hit an internal error after this call was completed and charged.",
    type="server_error", code="internal_error",
)


def should_retry_header(status: int) -> tuple[bytes, bytes] | None:
    """`x-should-retry: false` (honoured by the OpenAI and Anthropic SDKs) for errors a retry cannot fix:
    every 4xx but 408 and 429; None for the rest (429 and 5xx are left to the SDKs' own rules)."""
    if 400 <= status < 500 and status not in (408, 429):
        return (b"x-should-retry", b"false")
    return None
