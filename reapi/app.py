"""The ASGI application: a route table.

Exact paths first for the hot routes (no framework, no wrapper: each call's own id is its
x-request-id), then sub-applications mounted by path prefix, each answering in its own error
format. Every other response gets its x-request-id in one place, `stamped`.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from typing import Awaitable, Callable

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from reapi.api.chat import chat_completions, new_request_id
from reapi.api.http import Receive, Send, send_error
from reapi.asgi import CONNECTION_KEY
from reapi.api.messages import messages
from reapi.api.models import models
from reapi.errors import INTERNAL_ERROR, GatewayError
from reapi.gateway import Gateway
from reapi.public import ROUTES as PUBLIC_ROUTES
from reapi.public import build_public
from reapi.settings import Settings

log = logging.getLogger("reapi")

ASGI = Callable[[dict, Receive, Send], Awaitable[None]]


def setup_logging(level: str) -> None:
    """Give reapi's own loggers a handler once per process (uvicorn configures only its own):
    level, time and pid on each line, so the workers of one deployment can be told apart."""
    root = logging.getLogger("reapi")
    root.setLevel(level.upper())
    if not any(getattr(h, "_reapi", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s reapi[%(process)d] %(name)s: %(message)s"))
        handler._reapi = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def stamped(app: ASGI) -> ASGI:
    """`app` with a new x-request-id on its response: the one place for every route that has
    no call of its own (admin, public, models, errors of the table)."""

    async def run(scope: dict, receive: Receive, send: Send) -> None:
        rid = (b"x-request-id", new_request_id().encode())

        async def send_stamped(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                msg = {**msg, "headers": [*msg.get("headers", ()), rid]}
            await send(msg)

        await app(scope, receive, send_stamped)

    return run


def answer(err: GatewayError) -> ASGI:
    """An app that answers `err` (OpenAI envelope) whatever the request."""

    async def run(scope: dict, receive: Receive, send: Send) -> None:
        await send_error(send, err, [])

    return run


def models_route(gw: Gateway) -> ASGI:
    """GET /v1/models and /v1/models/{id} (OpenAI's envelope, Anthropic's for an anthropic-version request:
    reapi.api.models); it stamps its own request id, which an Anthropic error body repeats."""

    async def run(scope: dict, receive: Receive, send: Send) -> None:
        headers = [(b"x-request-id", new_request_id().encode())]
        try:
            await models(gw, scope, receive, send, headers)
        except GatewayError as err:
            await send_error(send, err, headers)
        except Exception:
            log.exception("models route failed")
            await send_error(send, INTERNAL_ERROR, headers)

    return run


def build_v1(gw: Gateway, models_app: ASGI, responses_app: ASGI) -> ASGI:
    """/v1/* beyond the exact hot paths: OpenAI's envelope, Anthropic's under /v1/messages."""

    async def unknown(scope: dict, receive: Receive, send: Send) -> None:
        await send_error(send, GatewayError(404, f"Unknown route {scope['path']}.", code="unknown_url"), [])

    unknown_app = stamped(unknown)
    chat_method = stamped(answer(GatewayError(405, "Use POST for /v1/chat/completions.", code="method_not_allowed")))

    async def v1(scope: dict, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if path.startswith("/v1/messages"):  # its call stamps its id; errors in Anthropic's envelope
            return await messages(gw, scope, receive, send)
        if path.startswith("/v1/models"):
            return await models_app(scope, receive, send)
        if path == "/v1/responses" or path.startswith("/v1/responses/"):  # stored responses; each has its id
            return await responses_app(scope, receive, send)
        if path == "/v1/chat/completions":
            return await chat_method(scope, receive, send)
        return await unknown_app(scope, receive, send)

    return v1


# The console's exact paths beside its /console/ prefix (reapi.console.routes names each page).
CONSOLE_PATHS = ("/console", "/signup", "/signup/verify", "/login", "/logout", "/password/forgot",
                 "/password/reset")


def lazy(factory: Callable[[], ASGI]) -> ASGI:
    """An app built by `factory` on its first request: a wing's imports (Jinja2, argon2, its
    templates) cost nothing to a process that never serves it, and nothing on the hot path."""
    built: list[ASGI] = []

    async def run(scope: dict, receive: Receive, send: Send) -> None:
        if not built:
            built.append(factory())
        await built[0](scope, receive, send)

    return run


def _console(gw: Gateway) -> ASGI:
    from reapi.console import build_console

    return build_console(gw)


def _tasks(gw: Gateway) -> ASGI:
    from reapi.tasks.api import build_tasks_api  # /api/v1/*: the task gateway, its own error envelope

    return build_tasks_api(gw)


def _stripe_webhook(gw: Gateway) -> ASGI:
    from reapi.stripe_hook import stripe_webhook

    return partial(stripe_webhook, gw)


def _site(gw: Gateway) -> ASGI:
    from reapi.site import build_site

    return build_site(gw)


def _admin(gw: Gateway) -> ASGI:
    from reapi.admin import build_admin  # FastAPI and pydantic (~11 MB), loaded on the first operator call

    return build_admin(gw)


def _admin_console(gw: Gateway) -> ASGI:
    from reapi.admin_console import build_admin_console

    return build_admin_console(gw)


# The public site's exact paths (reapi.site.routes), beside its /docs/ prefix; /pricing is shared (below).
SITE_PATHS = ("/", "/docs", "/llms.txt", "/openapi.json")


def by_accept(html: ASGI, other: ASGI) -> ASGI:
    """`html` for a browser (an Accept naming text/html before any application/json), `other` for every
    other client (no Accept, */*, application/json...)."""

    async def run(scope: dict, receive: Receive, send: Send) -> None:
        accept = next((v for k, v in scope.get("headers", ()) if k == b"accept"), b"").lower()
        at_html, at_json = accept.find(b"text/html"), accept.find(b"application/json")
        browser = at_html >= 0 and (at_json < 0 or at_html < at_json)
        await (html if browser else other)(scope, receive, send)

    return run


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env()
    setup_logging(settings.log_level)
    gw = Gateway(settings)

    from reapi.api import responses  # the Responses wing: imported here, never by the chat path

    models_app = models_route(gw)
    v1 = build_v1(gw, models_app, partial(responses.stored, gw))
    admin = stamped(lazy(partial(_admin, gw)))  # its OpenAPI page is /admin/docs, its document /admin/openapi.json
    public = stamped(build_public(gw))
    not_found = stamped(answer(GatewayError(404, "Not Found", code="not_found")))
    console = stamped(lazy(partial(_console, gw)))  # the customer console (reapi.console, on reapi.web)
    from reapi.media.serve import lazy_media_app  # a few ms, once; no store is opened until a file is asked for
    site = stamped(lazy(partial(_site, gw)))  # the public site (reapi.site, on reapi.web)
    admin_console = stamped(lazy(partial(_admin_console, gw)))  # the operator console (reapi.admin_console)

    # 1. the hot routes, by (method, path): each stamps its own call's request id
    hot: dict[tuple[str, str], ASGI] = {("POST", "/v1/chat/completions"): partial(chat_completions, gw),
                                        ("POST", "/v1/messages"): partial(messages, gw),
                                        ("POST", "/v1/responses"): partial(responses.create, gw),
                                        ("GET", "/v1/models"): models_app}
    # 2. exact public paths
    exact: dict[str, ASGI] = {path: public for path in PUBLIC_ROUTES}
    exact["/webhooks/stripe"] = stamped(lazy(partial(_stripe_webhook, gw)))  # Stripe's deliveries (reapi.stripe_hook)
    exact["/pricing"] = by_accept(site, public)  # the HTML rate card for browsers, the JSON for the rest
    exact.update({path: site for path in SITE_PATHS})
    exact["/admin/console"] = admin_console
    exact.update({path: console for path in CONSOLE_PATHS})
    # 3. sub-applications by prefix, first match wins
    mounts: tuple[tuple[str, ASGI], ...] = (
        ("/v1/", v1),  # OpenAI + Anthropic formats
        ("/media/", stamped(lazy_media_app(settings))),  # task output files (reapi.media), opened on first use
        ("/admin/console/", admin_console),  # the operator console's pages (before the admin API)
        ("/admin/", admin),  # the operator's API (reapi.admin)
        ("/api/v1/", lazy(partial(_tasks, gw))),  # the task gateway (reapi.tasks.api), its own error envelope
        ("/console/", console),  # the customer console's pages
        ("/static/", console),  # reapi.web's static files (served by the first web app)
        ("/docs/", site),  # the public site's model pages
    )

    async def app(scope, receive, send):
        if scope["type"] == "http":
            path = scope["path"]
            route = hot.get((scope["method"], path)) or exact.get(path)
            if route is None:
                route = next((sub for prefix, sub in mounts if path.startswith(prefix)), not_found)
            return await route(scope, receive, send)
        if scope["type"] == "lifespan":
            return await _lifespan(gw, receive, send)
        return await admin(scope, receive, send)

    app.gateway = gw  # type: ignore[attr-defined]  # for tests and the CLI
    app.server_limits = ServerLimits(settings.max_header_bytes, settings.header_timeout_s,  # type: ignore
                                     settings.body_timeout_s)
    return app


async def _lifespan(gw: Gateway, receive, send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            try:
                await gw.start()
                if gw.settings.task_worker == "on":
                    from reapi.tasks.worker import Worker  # at start-up, never on a request's path

                    gw.task_worker = Worker(gw)
                    gw.task_worker.start()
            except Exception as exc:
                log.exception("gateway failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            if getattr(gw, "task_worker", None) is not None:
                await gw.task_worker.stop()
            await gw.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


# --- the connection guard -----------------------------------------------------------------
#
# uvicorn's httptools protocol has no limit on header size or on the time a client may take
# to send its headers or body (h11_max_incomplete_event_size is for h11 only). This subclass
# adds them; `reapi serve` selects it with http="reapi.app:LimitedHttpProtocol".


@dataclass(frozen=True)
class ServerLimits:
    max_header_bytes: int
    header_timeout_s: float
    body_timeout_s: float


class _Refused(Exception):
    """Raised from a parser callback to stop parsing a refused request."""


_WAITING, _HEADERS, _BODY = 0, 1, 2  # between requests (uvicorn's keep-alive timer rules), in headers, in body


def _limits_of(config) -> ServerLimits:
    """The limits of the app this uvicorn config serves (create_app puts them on the app,
    under uvicorn's middleware), looked up once per config."""
    limits = getattr(config, "_reapi_limits", None)
    if limits is None:
        app = config.loaded_app
        while app is not None and not hasattr(app, "server_limits"):
            app = getattr(app, "app", None)
        if app is not None:
            limits = app.server_limits
        else:
            d = Settings()
            limits = ServerLimits(d.max_header_bytes, d.header_timeout_s, d.body_timeout_s)
        config._reapi_limits = limits
    return limits


class LimitedHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with three bounds per connection:

    - request line plus headers over ``max_header_bytes``: 431 and close;
    - headers not complete ``header_timeout_s`` after the connection opened or the request's
      first byte arrived: 408 and close (closed silently if nothing was sent);
    - a request body with no byte for ``body_timeout_s`` (while the app is reading it): close.

    Per-request cost when a request arrives in one read: three phase assignments; timers
    are armed only for connections that are waiting for more header or body bytes."""

    def __init__(self, config, server_state, app_state, _loop=None) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = _limits_of(config)
        self._max_header_bytes = limits.max_header_bytes
        self._header_s = limits.header_timeout_s
        self._body_s = limits.body_timeout_s
        self._phase = _HEADERS
        self._header_bytes = 0  # bytes of this request's earlier reads, all of them header bytes
        self._chunk = 0  # length of the read being parsed
        self._refused = False
        self._got_bytes = False
        self._last_body = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._lost_callback: Callable[[], None] | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self._header_s)  # a connection that never sends a full request is closed

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)
        callback, self._lost_callback = self._lost_callback, None
        if callback is not None:
            callback()

    # The lost hook: the call pipeline (reapi.proxy.upstream.Watch) learns that the client left without
    # a task of its own waiting on receive(). The request's scope carries the connection under
    # CONNECTION_KEY; one callback at a time (uvicorn answers a connection's requests one by one).
    def on_lost(self, callback: Callable[[], None]) -> bool:
        """Call `callback` once if the connection is lost; False (nothing registered) when it is gone
        already or another callback is registered."""
        if self._lost_callback is not None or self.transport is None or self.transport.is_closing():
            return False
        self._lost_callback = callback
        return True

    def off_lost(self, callback: Callable[[], None]) -> None:
        if self._lost_callback == callback:
            self._lost_callback = None

    def data_received(self, data: bytes) -> None:
        self._chunk = len(data)
        super().data_received(data)
        phase = self._phase
        if phase == _WAITING or self.transport.is_closing():
            return
        if phase == _HEADERS:
            self._got_bytes = True
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._refuse(431, "Request Header Fields Too Large")
            elif self._timer is None:
                self._arm(self._header_s)
        else:  # _BODY: more of it is still to come
            self._last_body = self.loop.time()
            if self._timer is None:
                self._arm(self._body_s)

    # parser callbacks (httptools calls them during feed_data)
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.scope[CONNECTION_KEY] = self  # type: ignore[literal-required]
        self._phase = _HEADERS
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._phase = _BODY
        self._disarm()
        if self._header_bytes + self._chunk > self._max_header_bytes and self._header_size() > self._max_header_bytes:
            self._refuse(431, "Request Header Fields Too Large")
            raise _Refused  # stops the parser: the app never sees this request
        super().on_headers_complete()

    def _header_size(self) -> int:
        return len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # uvicorn's answer to a parser error; ours was sent already
            super().send_400_response(msg)

    def on_message_complete(self) -> None:
        self._phase = _WAITING
        if self._timer is not None:
            self._disarm()
        super().on_message_complete()

    # timers
    def _arm(self, delay: float) -> None:
        self._timer = self.loop.call_later(delay, self._deadline)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline(self) -> None:
        self._timer = None
        if self.transport is None or self.transport.is_closing():
            return
        cycle = self.cycle
        if self._phase == _HEADERS:
            if cycle is not None and not cycle.response_complete:
                # a pipelined request stalls behind one still being answered: finish that one, then close
                cycle.keep_alive = False
                self.flow.pause_reading()
            elif self._got_bytes:
                self._refuse(408, "Request Timeout")
            else:
                self.transport.close()
        elif self._phase == _BODY:
            now = self.loop.time()
            if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
                self._last_body = now  # the app is not reading yet: not the client's delay
            idle = now - self._last_body
            if idle < self._body_s:
                self._arm(self._body_s - idle)
            else:
                log.debug("closing a connection whose request body stalled for %.0f s", idle)
                self.transport.close()  # the app's receive() sees http.disconnect

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        body = message.encode()
        self.transport.write(b"".join([STATUS_LINE[status], b"content-type: text/plain; charset=utf-8\r\n",
                                       b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]))
        self.transport.close()
