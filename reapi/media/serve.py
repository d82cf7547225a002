"""GET /media/tasks/{id}/{n}.{ext}: stored output files, read from the store (local or S3).

Only names of the stored shape are looked up (reapi.media.keys): anything else, a '..', an
encoded slash, an unknown extension, is 404 without touching the store. The content type is
the one of the stored name's extension (the bytes were sniffed when stored), with
`x-content-type-options: nosniff` and a sandboxing Content-Security-Policy so a browser never
runs anything from here. GET and HEAD only.
"""
from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, Protocol

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGI = Callable[[dict, Receive, Send], Awaitable[None]]

_PATH = re.compile(r"/media/(tasks/[A-Za-z0-9_\-]{1,64}/\d{1,4}\.[a-z0-9]{2,5})")
_SAFETY = [(b"x-content-type-options", b"nosniff"),
           (b"content-security-policy", b"default-src 'none'; sandbox"),
           (b"cross-origin-resource-policy", b"cross-origin")]


class Readable(Protocol):
    async def get(self, key: str) -> tuple[bytes, str] | None: ...


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
        await _answer(send, 200, data, [(b"content-type", content_type.encode("latin-1")),
                                        (b"cache-control", b"public, max-age=3600"), *_SAFETY], head)

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
