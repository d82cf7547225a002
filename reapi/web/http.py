"""A web request and its answer: query, headers, cookies, client address, bounded form bodies."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator
from urllib.parse import parse_qsl, urlsplit

from reapi.asgi import ClientGone, Receive, read_body
from reapi.errors import GatewayError
from reapi.settings import Settings

if TYPE_CHECKING:
    from reapi.web.sessions import Session

FORM_MAX_BYTES = 64 * 1024  # a console form is a few fields; anything larger is refused (413)
FORM_MAX_FIELDS = 100
HOST_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]")


class WebError(Exception):
    """An error answered as an HTML error page (or JSON for JSON clients)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    # A body sent piece by piece (e.g. a CSV download) instead of `body`: an async iterator of bytes.
    stream: AsyncIterator[bytes] | None = None


def redirect(location: str, status: int = 303) -> Response:
    """See other: after a POST the browser GETs `location` (a path on this site)."""
    if not location.startswith("/") or location.startswith("//"):
        location = "/"
    return Response(status, b"", "text/plain; charset=utf-8", [("location", location)])


def _first_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


class Request:
    """One HTTP request to a web page. `session` and `user` are set by WebApp before the page runs."""

    def __init__(self, scope: dict, receive: Receive, settings: Settings) -> None:
        self.scope = scope
        self.receive = receive
        self.settings = settings
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query = parse_query(scope.get("query_string", b"").decode("latin-1"))
        self.headers: dict[str, str] = {}
        for k, v in scope.get("headers", ()):
            self.headers.setdefault(k.decode("latin-1").lower(), v.decode("latin-1"))
        self.cookies = parse_cookies(self.headers.get("cookie", ""))
        client = scope.get("client")
        self.client_addr: str = client[0] if client else "unknown"
        self.path_params: dict[str, Any] = {}
        self.gateway: Any = None  # the process's Gateway (WebApp sets it)
        self.session: Session | None = None
        self.csrf_token: str = ""  # the token this request's forms carry (WebApp sets it)
        self.set_cookies: list[str] = []  # Set-Cookie values for the response
        self._form: dict[str, str] | None = None

    @property
    def user(self) -> dict | None:
        return self.session.user if self.session is not None else None

    def wants_json(self) -> bool:
        if self.query.get("format") == "json":
            return True
        accept = self.headers.get("accept", "")
        return accept.split(",", 1)[0].strip().lower().startswith("application/json")

    def origin(self) -> str:
        """This deployment's base URL: REAPI_PUBLIC_URL, else the request's own scheme and host."""
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        host = self.headers.get("host", "")
        if not host or len(host) > 255 or not set(host) <= HOST_CHARS:
            server = self.scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        return f"{self.scope.get('scheme', 'http')}://{host}"

    def secure_cookies(self) -> bool:
        return bool(self.settings.public_url and urlsplit(self.settings.public_url).scheme == "https")

    async def form(self) -> dict[str, str]:
        """The urlencoded form body (first value of each field), at most FORM_MAX_BYTES.
        415 for another content type, 413 when larger, 400 when it is not UTF-8."""
        if self._form is not None:
            return self._form
        ctype = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            raise WebError(415, "Send this form as application/x-www-form-urlencoded.")
        try:
            body = await read_body(self.scope, self.receive, FORM_MAX_BYTES)
        except GatewayError:
            raise WebError(413, f"The form is larger than {FORM_MAX_BYTES} bytes.") from None
        except ClientGone:
            raise
        try:
            text = body.decode("utf-8")
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=FORM_MAX_FIELDS, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise WebError(400, "The form is not valid UTF-8 form data.") from None
        self._form = _first_values(pairs)
        return self._form


def parse_query(raw: str) -> dict[str, str]:
    """The query string's first value of each name; one longer than 8 KiB or with more than
    FORM_MAX_FIELDS fields counts as empty (pages only read a few short parameters)."""
    if len(raw) > 8192:
        return {}
    try:
        return _first_values(parse_qsl(raw, keep_blank_values=True, max_num_fields=FORM_MAX_FIELDS))
    except ValueError:
        return {}


def parse_cookies(header: str) -> dict[str, str]:
    """name=value pairs of a Cookie header (first of each name); malformed parts are skipped."""
    out: dict[str, str] = {}
    if len(header) > 8192:
        return out
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


def cookie(name: str, value: str, *, max_age: int | None, secure: bool, path: str = "/") -> str:
    """A Set-Cookie value: HttpOnly, SameSite=Lax, Secure when the site is served over https."""
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
