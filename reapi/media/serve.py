"""GET /media/tasks/{id}/{n}.{ext}: stored output files, read from the store (local or S3).

Only names of the stored shape are looked up (reapi.media.keys): anything else, a '..', an
encoded slash, an unknown extension, is 404 without touching the store. The content type is
the one of the stored name's extension (the bytes were sniffed when stored), with
`x-content-type-options: nosniff` and a sandboxing Content-Security-Policy so a browser never
runs anything from here. GET and HEAD only. One byte range (`Range: bytes=a-b`, `a-`, `-n`) is
answered 206 (browsers need it to play video); several ranges get the whole file; a range
past the end is 416.
"""
from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Protocol

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGI = Callable[[dict, Receive, Send], Awaitable[None]]

_RANGE = re.compile(r"bytes=(\d{0,19})-(\d{0,19})")
_PATH = re.compile(r"/media/(tasks/[A-Za-z0-9_\-]{1,64}/\d{1,4}\.[a-z0-9]{2,5})")
_SAFETY = [(b"x-content-type-options", b"nosniff"),
           (b"content-security-policy", b"default-src 'none'; sandbox"),
           (b"cross-origin-resource-policy", b"cross-origin")]


class Readable(Protocol):
    async def get(self, key: str) -> tuple[bytes, str] | None: ...


def byte_range(header: bytes | None, size: int) -> tuple[int, int] | None | bool:
    """(first, last) of a single satisfiable range; None: no (usable) range, serve it all;
    False: unsatisfiable (416)."""
    if header is None:
        return None
    m = _RANGE.fullmatch(header.decode("latin-1").strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # the last n bytes
        n = int(m.group(2))
        return (max(0, size - n), size - 1) if n and size else False
    first = int(m.group(1))
    last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if first >= size or (m.group(2) and int(m.group(2)) < first):
        return False
    return first, last


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], head: bool) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": b"" if head else body})


def media_app(store: Readable) -> ASGI:
    """The ASGI app serving `store`'s files; mount it at /media/."""
    from reapi.media.keys import check_key

    async def app(scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        head = scope["method"] == "HEAD"
        text = [(b"content-type", b"text/plain; charset=utf-8"), *_SAFETY]
        if scope["method"] not in ("GET", "HEAD"):
            return await _answer(send, 405, b"method not allowed\n", [*text, (b"allow", b"GET, HEAD")], head)
        m = _PATH.fullmatch(scope["path"])
        found: Any = None
        if m is not None:
            try:
                check_key(m.group(1))
            except ValueError:
                pass
            else:
                found = await store.get(m.group(1))
        if found is None:
            return await _answer(send, 404, b"not found\n", text, head)
        data, content_type = found
        headers = [(b"content-type", content_type.encode("latin-1")), (b"accept-ranges", b"bytes"),
                   (b"cache-control", b"public, max-age=3600"), *_SAFETY]
        wanted = byte_range(next((v for k, v in scope["headers"] if k == b"range"), None), len(data))
        if wanted is False:
            return await _answer(send, 416, b"", [*headers, (b"content-range", f"bytes */{len(data)}".encode())],
                                 head)
        if wanted is None:
            return await _answer(send, 200, data, headers, head)
        first, last = wanted
        await _answer(send, 206, data[first:last + 1],
                      [*headers, (b"content-range", f"bytes {first}-{last}/{len(data)}".encode())], head)

    return app


def lazy_media_app(settings: Any) -> ASGI:
    """media_app over open_store(settings), opened on the first request (nothing is imported or
    opened for a gateway that never serves a file)."""
    app: list[ASGI] = []

    async def lazy(scope: dict, receive: Receive, send: Send) -> None:
        if not app:
            from reapi.media import open_store

            app.append(media_app(open_store(settings)))
        await app[0](scope, receive, send)

    return lazy
