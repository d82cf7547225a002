"""Tiny ASGI helpers for the hot routes (no framework on the hot path): a floor below api/ and proxy/."""
from __future__ import annotations

from typing import Awaitable, Callable, Iterable

from reapi.errors import GatewayError, should_retry_header

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]

JSON = b"application/json"


def header(scope: dict, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return v
    return None


def bearer(scope: dict) -> str | None:
    raw = header(scope, b"authorization")
    if raw is None or raw[:7].lower() != b"bearer ":
        return None
    return raw[7:].strip().decode("latin-1") or None


async def read_body(scope: dict, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone()
        chunk = msg.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
        if not msg.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# The scope key under which reapi's server protocol (reapi.app.LimitedHttpProtocol) offers the request's
# connection, for its lost hook (reapi.proxy.upstream.Watch). Absent under other ASGI servers.
CONNECTION_KEY = "reapi.connection"

class ClientGone(Exception):
    """The client disconnected before we answered."""


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, f"The request body is larger than this gateway accepts ({limit} bytes).",
                        type="invalid_request_error", code="request_too_large")


def headers_list(pairs: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in pairs]


async def send_bytes(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]],
                     content_type: bytes = JSON) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def error_headers(err: GatewayError, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers of an error answer: the call's, the error's own, and x-should-retry when it is final."""
    out = headers + headers_list(err.headers.items())
    retry = should_retry_header(err.status)
    if retry is not None and "x-should-retry" not in err.headers:
        out.append(retry)
    return out


async def send_error(send: Send, err: GatewayError, headers: list[tuple[bytes, bytes]]) -> None:
    await send_bytes(send, err.status, err.body(), error_headers(err, headers))
