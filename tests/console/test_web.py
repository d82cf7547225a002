"""The web floor (reapi.web) through the console's pages on a real gateway: security headers,
caching, one context as HTML or JSON, CSRF, bounded forms, error pages, sessions, lazy import."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import aiohttp
from sqlalchemy import text

from tests.console.conftest import seed_model
from tests.harness import Gateway, gateway_settings


async def test_pages_carry_the_security_headers_and_are_never_cached(web):
    c = web()
    status, headers, body = await c.get("/login")
    assert status == 200 and "<form" in body
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["cache-control"] == "no-store"
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert "x-request-id" in headers


async def test_static_files_are_cached_with_their_hash_and_etag(web):
    c = web()
    _, _, page = await c.get("/login")
    href = page.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    assert href.startswith("/static/style.css?v=")
    status, headers, css = await c.get(href)
    assert status == 200 and "max-width" in css
    assert headers["cache-control"] == "public, max-age=31536000, immutable"
    assert headers["content-type"].startswith("text/css")
    status, headers, _ = await c.get("/static/style.css")
    assert headers["cache-control"] == "public, max-age=86400"
    status, _, body = await c.get("/static/style.css", headers={"If-None-Match": headers["etag"]})
    assert status == 304 and body == ""
    for path in ("/static/nope.css", "/static/../settings.py", "/static/%2e%2e/app.py"):
        assert (await c.get(path))[0] == 404


async def test_one_context_answers_as_html_and_as_json(web):
    c = web()
    assert (await c.signup("json@example.com"))[0] == 303
    status, headers, html = await c.get("/console")
    assert status == 200 and 'id="balance-chat"' in html and "<svg" in html
    for kw in ({"params": {"format": "json"}}, {"headers": {"Accept": "application/json"}}):
        status, headers, body = await c.get("/console", **kw)
        assert status == 200 and headers["content-type"] == "application/json"
        data = json.loads(body)
        assert data["balances_usd"] == {"chat": "0.00", "tasks": "0.00"}
        assert data["requests_24h"] == 0 and len(data["chart"]["days"]) == 30
        assert not [k for k in data if k.startswith("_")]  # template-only keys stay out
        assert data["balances_usd"]["chat"] in html


async def test_every_post_needs_its_csrf_token(web):
    c = web()
    await c.get("/login")
    for data in ({"email": "a@example.com", "password": "x" * 8},
                 {"email": "a@example.com", "password": "x" * 8, "csrf_token": "wrong-token-of-the-right-size"}):
        status, _, body = await c.post("/login", data, csrf=False)
        assert status == 403 and "security token" in body
    fresh = web()  # no cookie at all: a token alone does not pass
    status, _, _ = await fresh.post("/signup", {"email": "b@example.com", "password": "x" * 8,
                                                "csrf_token": c.csrf}, csrf=False)
    assert status == 403
    # signed in: the session's token, and a signed-out visitor's token no longer works
    assert (await c.signup("csrf@example.com"))[0] == 303
    anon = c.csrf
    await c.get("/console/keys")
    assert c.csrf != anon
    assert (await c.post("/console/keys", {"name": "k", "csrf_token": anon}, csrf=False))[0] == 403
    assert (await c.post("/console/keys", {"name": "k"}, csrf=False))[0] == 403
    assert (await c.post("/console/keys", {"name": "k"}))[0] == 201
    # the token may come as a header (small progressive JS); a non-form body is then 415
    async with c.http.post(c.base + "/console/keys", data=b'{"name": "k"}',
                           headers={"x-csrf-token": c.csrf, "content-type": "application/json"}) as r:
        assert r.status == 415


async def test_forms_are_bounded(web):
    c = web()
    await c.get("/login")
    status, _, body = await c.post("/login", {"email": "a" * 70_000, "password": "x"})
    assert status == 413
    async with c.http.post(c.base + "/login", data=b"\xff\xfe=\xff",
                           headers={"content-type": "application/x-www-form-urlencoded"}) as r:
        assert r.status in (400, 403)


async def test_errors_are_pages(web):
    c = web()
    for query in ("&".join(f"f{i}=1" for i in range(200)), "x=" + "y" * 9000):  # too many / too long: ignored
        status, headers, _ = await c.get("/login?" + query)
        assert status == 200 and headers["content-security-policy"]
    status, headers, body = await c.get("/console/nothing-here")
    assert status == 404 and "<h1>404</h1>" in body and headers["content-type"].startswith("text/html")
    status, _, body = await c.get("/console/nothing-here", params={"format": "json"})
    assert status == 404 and '"status":404' in body
    status, headers, _ = await c.get("/logout")
    assert status == 405 and headers["allow"] == "POST"
    status, headers, _ = await c.get("/console/keys")
    assert status == 303 and headers["location"] == "/login?next=/console/keys"
    status, _, _ = await c.get("/console/keys", headers={"Accept": "application/json"})
    assert status == 401


async def test_session_cookie_and_row(web, console):
    c = web()
    status, headers, _ = await c.signup("cookie@example.com")
    set_cookie = headers["set-cookie"]
    assert set_cookie.startswith("reapi_session=")
    token = set_cookie.split("=", 1)[1].split(";", 1)[0]
    flags = [f.strip() for f in set_cookie.split(";")]
    assert "HttpOnly" in flags and "SameSite=Lax" in flags and "Secure" not in flags
    async with console.gw.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT token_hash FROM sessions"))).scalars().all()
    assert rows == [hashlib.sha256(token.encode()).hexdigest()]  # only the hash is stored
    assert token not in rows


def _cookies(resp) -> dict[str, str]:
    """name -> the full Set-Cookie value of each cookie a response sets."""
    return {v.split("=", 1)[0]: v for v in resp.headers.getall("set-cookie", [])}


async def test_secure_cookies_when_the_public_url_is_https(sqlite_url, upstream):
    """Over https every cookie is Secure (a cookie jar would not send them back over the test's
    plain http, so the test carries them by hand)."""
    gw = await Gateway(gateway_settings(sqlite_url, public_url="https://console.example.com")).start()
    try:
        await seed_model(gw, upstream)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async with http.get(gw.url + "/signup") as r:
                csrf_cookie = _cookies(r)["reapi_csrf"]
                form = await r.text()
            assert "Secure" in [f.strip() for f in csrf_cookie.split(";")]
            anon = csrf_cookie.split("=", 1)[1].split(";", 1)[0]
            token_field = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            assert token_field == anon
            async with http.post(gw.url + "/signup", allow_redirects=False, headers={"Cookie": f"reapi_csrf={anon}"},
                                 data={"email": "secure@example.com", "password": "correct horse",
                                       "csrf_token": anon}) as r:
                assert r.status == 303
                session_cookie = _cookies(r)["reapi_session"]
            flags = [f.strip() for f in session_cookie.split(";")]
            assert {"HttpOnly", "SameSite=Lax", "Secure"} <= set(flags)
            token = session_cookie.split("=", 1)[1].split(";", 1)[0]
            async with http.get(gw.url + "/console", headers={"Cookie": f"reapi_session={token}"}) as r:
                assert r.status == 200
                html = await r.text()
        assert "https://console.example.com/v1" in html  # the snippets use REAPI_PUBLIC_URL
    finally:
        await gw.stop()


async def test_idle_and_absolute_expiry_end_a_session(web, console):
    c = web()
    await c.signup("idle@example.com")
    assert (await c.get("/console"))[0] == 200
    async with console.gw.engine.begin() as conn:  # as if unused for longer than REAPI_SESSION_IDLE_S
        await conn.execute(text("UPDATE sessions SET last_seen_at = last_seen_at - :ms"),
                           {"ms": (console.settings.session_idle_s + 1) * 1000})
    status, headers, _ = await c.get("/console")
    assert status == 303 and "reapi_session=;" in headers.get("set-cookie", "")
    async with console.gw.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM sessions"))).scalar() == 0
    await c.login("idle@example.com")
    assert (await c.get("/console"))[0] == 200
    async with console.gw.engine.begin() as conn:  # past its absolute end, however recently used
        await conn.execute(text("UPDATE sessions SET expires_at = 1"))
    assert (await c.get("/console"))[0] == 303


def test_the_console_is_imported_only_when_first_opened(tmp_path):
    code = ("import sys\nfrom reapi.app import create_app\nfrom reapi.settings import Settings\n"
            f"create_app(Settings(database_url='sqlite:///{tmp_path}/x.db'))\n"
            "loaded = [m for m in ('reapi.console', 'reapi.web', 'jinja2', 'argon2', 'reapi.operations.users') "
            "if m in sys.modules]\nassert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_pages_work_on_a_phone_width_screen_in_chromium(browser, console):
    def walk(b, base):
        page = b.new_page(viewport={"width": 375, "height": 740})
        page.goto(base + "/login")
        assert page.title() == "Sign in · reapi"
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing wider than the screen
        assert page.locator("input[name=email]").is_visible()
        page.close()

    await browser.run(walk, console.url)


async def _call(app, method: str, path: str, headers=()) -> tuple[int, dict, bytes]:
    """One request through an ASGI app (the floor's own behaviour, apart from the console's pages)."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg):
        sent.append(msg)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "client": ("127.0.0.1", 1),
             "headers": [(k.encode(), v.encode()) for k, v in headers], "scheme": "http",
             "server": ("127.0.0.1", 80)}
    await app(scope, receive, send)
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, sent[1]["body"]


async def test_a_failing_page_is_a_500_page_without_its_traceback(console, caplog):
    from reapi.errors import GatewayError
    from reapi.web import Page, WebApp, WebError

    async def boom(req):
        raise RuntimeError("secret internals")

    async def refused(req):
        raise GatewayError(400, "That value is not allowed.", param="x")

    async def busy(req):
        raise WebError(429, "Slow down.", {"retry-after": "7"})

    app = WebApp(console.gw, [Page("GET", "/x/boom", boom, auth="public"),
                              Page("GET", "/x/refused", refused, auth="public"),
                              Page("GET", "/x/busy", busy, auth="public"),
                              Page("GET", "/x/missing", "reapi.console.nothing:here", auth="public")])
    status, headers, body = await _call(app, "GET", "/x/boom")
    assert status == 500 and b"Something went wrong" in body and b"secret internals" not in body
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert "secret internals" in caplog.text  # logged server-side
    status, _, body = await _call(app, "GET", "/x/boom", [("accept", "application/json")])
    assert status == 500 and json.loads(body) == {"error": {"status": 500, "message":
                                                            "Something went wrong on our side. Please try again."}}
    status, _, body = await _call(app, "GET", "/x/refused")
    assert status == 400 and b"That value is not allowed." in body
    status, headers, _ = await _call(app, "GET", "/x/busy")
    assert status == 429 and headers["retry-after"] == "7"
    assert (await _call(app, "GET", "/x/missing"))[0] == 500
    status, _, body = await _call(app, "HEAD", "/x/refused")
    assert status == 400 and body == b""
