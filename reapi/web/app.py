"""WebApp: the ASGI application of a page table.

For each request: static files under /static/; otherwise the page whose path matches (404, or
405 with Allow); the session from its cookie; for every POST the CSRF check (403 without the
right token); the page's `auth` (a guest is sent to /login, a non-admin gets 403); then the
page. Errors become HTML error pages (JSON for JSON clients) and every answer carries the
security headers below. Pages are never cached by browsers or proxies (they show balances and
keys); static files are.
"""
from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any, Sequence
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncEngine

from reapi.asgi import ClientGone, Receive, Send
from reapi.errors import GatewayError
from reapi.settings import Settings
from reapi.web import sessions
from reapi.web.http import Request, Response, WebError, cookie, redirect
from reapi.web.pages import Page, error_page
from reapi.web.static import PREFIX, STATIC

log = logging.getLogger("reapi.web")

CSRF_COOKIE = "reapi_csrf"  # a signed-out visitor's forms (sign-in, sign-up): double-submit token
CSRF_FIELD = "csrf_token"
SECURITY_HEADERS = [
    ("content-security-policy", "default-src 'self'; frame-ancestors 'none'; base-uri 'self'; object-src 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
]


class WebApp:
    """`gateway` is the process's reapi.gateway.Gateway (its engine, settings and catalog), handed
    to every page as `req.gateway`."""

    def __init__(self, gateway: Any, pages: Sequence[Page]) -> None:
        self.gateway = gateway
        self.engine: AsyncEngine = gateway.engine
        self.settings: Settings = gateway.settings
        self.pages = list(pages)
        # the navigation bar: (label, path, auth) of each GET page with a label, in table order
        self.nav = tuple((p.nav, p.path, p.auth) for p in self.pages if p.nav and p.method == "GET")

    def find(self, method: str, path: str) -> tuple[Page | None, dict, list[str]]:
        allowed: list[str] = []
        for page in self.pages:
            params = page.match(path)
            if params is None:
                continue
            if page.method == method or (method == "HEAD" and page.method == "GET"):
                return page, params, []
            allowed.append(page.method)
        return None, {}, allowed

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        req = Request(scope, receive, self.settings)
        scope["reapi.nav"] = self.nav
        req.gateway = self.gateway
        try:
            resp = await self.handle(req)
        except ClientGone:
            return
        except WebError as err:
            resp = error_page(req, err.status, err.message)
            resp.headers.extend(err.headers.items())
        except GatewayError as err:  # an operation refused a value: the message is for the user
            resp = error_page(req, err.status, err.message)
        except Exception:
            log.exception("web page %s %s failed", req.method, req.path)
            resp = error_page(req, 500, "Something went wrong on our side. Please try again.")
        await self.send(req, resp, send)

    async def handle(self, req: Request) -> Response:
        if req.path.startswith(PREFIX):
            return STATIC.serve(req)
        page, params, allowed = self.find(req.method, req.path)
        if page is None:
            if allowed:
                raise WebError(405, "This page does not accept that method.", {"allow": ", ".join(allowed)})
            raise WebError(404, "There is no page here.")
        req.path_params = params
        await self.open_session(req)
        if req.method == "POST":
            await self.check_csrf(req)
        if page.auth != "public" and req.user is None:
            if req.method == "GET" and not req.wants_json():
                return redirect("/login?next=" + quote(req.path, safe="/"))
            raise WebError(401, "Sign in to open this page.")
        if page.auth == "admin" and not req.user["is_admin"]:  # type: ignore[index]
            raise WebError(403, "This page is for operators.")
        return await page.resolve()(req)

    async def open_session(self, req: Request) -> None:
        token = req.cookies.get(sessions.COOKIE)
        if token:
            req.session = await sessions.load(self.engine, token, self.settings)
            if req.session is None:  # ended or expired: drop the stale cookie
                req.set_cookies.append(cookie(sessions.COOKIE, "", max_age=0, secure=req.secure_cookies()))
        if req.session is not None:
            req.csrf_token = req.session.csrf_token
            return
        anon = req.cookies.get(CSRF_COOKIE, "")
        if not (20 <= len(anon) <= 64 and anon.replace("-", "").replace("_", "").isalnum()):
            anon = secrets.token_urlsafe(24)
            req.set_cookies.append(cookie(CSRF_COOKIE, anon, max_age=None, secure=req.secure_cookies()))
            req.cookies.pop(CSRF_COOKIE, None)  # a new one: this request cannot carry it yet
        req.csrf_token = anon

    async def check_csrf(self, req: Request) -> None:
        """Every POST carries the token of its session (or of the signed-out visitor's cookie)."""
        expected = req.csrf_token
        if req.session is None and CSRF_COOKIE not in req.cookies:
            expected = ""
        given = req.headers.get("x-csrf-token")
        if given is None:
            try:
                given = (await req.form()).get(CSRF_FIELD, "")
            except WebError as err:
                if err.status == 415:
                    raise WebError(403, "This form is missing its security token; reload the page and "
                                        "try again.") from None
                raise
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise WebError(403, "This form is missing its security token or it is out of date; reload the page "
                                "and try again.")

    async def send(self, req: Request, resp: Response, send: Send) -> None:
        headers = [(b"content-type", resp.content_type.encode())]
        if resp.stream is None:
            headers.append((b"content-length", str(len(resp.body)).encode()))
        names = {k.lower() for k, _ in resp.headers}
        if "cache-control" not in names:
            headers.append((b"cache-control", b"no-store"))
        headers += [(k.encode(), v.encode("latin-1")) for k, v in [*SECURITY_HEADERS, *resp.headers]]
        headers += [(b"set-cookie", c.encode("latin-1")) for c in req.set_cookies]
        await send({"type": "http.response.start", "status": resp.status, "headers": headers})
        if resp.stream is not None and req.method != "HEAD":
            # a failure midway propagates: the server logs it and cuts the connection, so the
            # download ends without its final chunk and the client sees it truncated
            async for chunk in resp.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.body", "body": b"" if req.method == "HEAD" else resp.body})
