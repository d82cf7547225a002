"""Fixtures of the console's tests: a gateway on a real port in front of the demo upstream, and
Playwright driving Debian's Chromium (/usr/bin/chromium; ./scripts/test installs it with apt-get
where it is missing). Playwright's sync API runs in its own thread (it refuses to run inside
the tests' asyncio loop), so browser steps are plain functions run with `in_browser`."""
from __future__ import annotations

import asyncio
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import pytest

from tests.harness import Gateway, gateway_settings

CHROMIUM = Path("/usr/bin/chromium")


def chromium_path() -> str:
    """Debian's Chromium; its absence is a broken set-up, not a reason to skip."""
    found = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    assert found, "Chromium is missing: run ./scripts/test (as root it installs it with apt-get)"
    return found


class Browser:
    """One Chromium for a test, driven from a worker thread (Playwright's sync API)."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pw = self.browser = None

    def _start(self) -> None:
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.browser = self.pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                               args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])

    def _stop(self) -> None:
        if self.browser is not None:
            self.browser.close()
        if self.pw is not None:
            self.pw.stop()

    async def run(self, fn, *args):
        """fn(browser, *args) in the browser's thread."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, lambda: fn(self.browser, *args))

    async def start(self) -> "Browser":
        await asyncio.get_running_loop().run_in_executor(self.pool, self._start)
        return self

    async def stop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, self._stop)
        self.pool.shutdown(wait=True)


@pytest.fixture
async def browser():
    b = await Browser().start()
    yield b
    await b.stop()


def console_settings(url: str, **kw):
    return gateway_settings(url, **kw)


@pytest.fixture
async def console(store_url, upstream):
    """A gateway with one priced model served by the demo upstream (no account yet), on SQLite
    and on PostgreSQL."""
    gw = await Gateway(console_settings(store_url)).start()
    await seed_model(gw, upstream)
    yield gw
    await gw.stop()


async def seed_model(gw: Gateway, upstream, model: str = "gpt-5.5") -> None:
    from tests.harness import UPSTREAM_KEY

    await gw.admin("PUT", f"/admin/models/{model}", {
        "input_usd_per_mtok": "5.00", "output_usd_per_mtok": "30.00", "context_window": 1_000_000,
        "max_output_tokens": 128_000}, expect=200)
    await gw.admin("POST", "/admin/channels", {"name": "mock", "type": "openai", "base_url": upstream.url + "/v1",
                                               "api_key": UPSTREAM_KEY, "models": [model]}, expect=201)


CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class WebClient:
    """A cookie-keeping HTTP client for the console (real sockets, no browser)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def get(self, path: str, **kw) -> tuple[int, dict, str]:
        async with self.http.get(self.base + path, allow_redirects=False, **kw) as r:
            text = await r.text()
            m = CSRF.search(text)
            if m:
                self.csrf = m.group(1)
            return r.status, {k.lower(): v for k, v in r.headers.items()}, text

    async def post(self, path: str, data: dict, *, csrf: bool = True, **kw) -> tuple[int, dict, str]:
        if csrf and "csrf_token" not in data:
            if not self.csrf:
                await self.get("/login")
            data = {**data, "csrf_token": self.csrf}
        async with self.http.post(self.base + path, data=data, allow_redirects=False, **kw) as r:
            text = await r.text()
            m = CSRF.search(text)
            if m:
                self.csrf = m.group(1)
            return r.status, {k.lower(): v for k, v in r.headers.items()}, text

    async def signup(self, email: str, password: str = "correct horse") -> tuple[int, dict, str]:
        await self.get("/signup")
        return await self.post("/signup", {"email": email, "password": password})

    async def login(self, email: str, password: str = "correct horse") -> tuple[int, dict, str]:
        await self.get("/login")
        return await self.post("/login", {"email": email, "password": password})

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def web(console):
    clients: list[WebClient] = []

    def make() -> WebClient:
        c = WebClient(console.url)
        clients.append(c)
        return c

    yield make
    for c in clients:
        await c.close()


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free port, keeping every message it receives."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        from tests.harness import free_port

        self.messages: list = []
        self.port = free_port()
        box = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                from email import message_from_bytes, policy

                box.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.url = f"smtp://127.0.0.1:{self.port}"

    def start(self) -> "Mailbox":
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    async def wait(self, n: int = 1, timeout_s: float = 10) -> list:
        for _ in range(int(timeout_s * 20)):
            if len(self.messages) >= n:
                return self.messages
            await asyncio.sleep(0.05)
        raise AssertionError(f"expected {n} mail(s), got {len(self.messages)}")

    @staticmethod
    def link(msg) -> str:
        m = re.search(r"https?://\S+", msg.get_content())
        assert m, msg.get_content()
        return m.group(0)


@pytest.fixture
def mailbox():
    box = Mailbox().start()
    yield box
    box.stop()
