"""Static files of reapi/web/static, read once into memory, served under /static/ with a
content hash in their URL (`static("style.css")` -> /static/style.css?v=1a2b...), an ETag,
and a day of caching (a year, immutable, when the URL's hash is the current one)."""
from __future__ import annotations

import hashlib
import mimetypes
from pathlib import Path

from reapi.web.http import Request, Response

DIR = Path(__file__).parent / "static"
PREFIX = "/static/"


class StaticFiles:
    def __init__(self, directory: Path) -> None:
        self.files: dict[str, tuple[bytes, str, str]] = {}  # name -> body, content type, hash
        for f in sorted(directory.iterdir()) if directory.is_dir() else ():
            if f.is_file() and not f.name.startswith("."):
                body = f.read_bytes()
                ctype = mimetypes.guess_type(f.name)[0] or "application/octet-stream"
                if ctype.startswith("text/") or ctype in ("application/javascript", "image/svg+xml"):
                    ctype += "; charset=utf-8"
                self.files[f.name] = (body, ctype, hashlib.sha256(body).hexdigest()[:16])

    def url(self, name: str) -> str:
        return f"{PREFIX}{name}?v={self.files[name][2]}"

    def serve(self, req: Request) -> Response:
        name = req.path[len(PREFIX):]
        found = self.files.get(name)
        if found is None or req.method not in ("GET", "HEAD"):
            return Response(404, b"Not Found", "text/plain; charset=utf-8")
        body, ctype, digest = found
        etag = f'"{digest}"'
        cache = ("public, max-age=31536000, immutable" if req.query.get("v") == digest
                 else "public, max-age=86400")
        headers = [("etag", etag), ("cache-control", cache)]
        if req.headers.get("if-none-match") == etag:
            return Response(304, b"", ctype, headers)
        return Response(200, body, ctype, headers)


STATIC = StaticFiles(DIR)
