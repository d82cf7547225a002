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
