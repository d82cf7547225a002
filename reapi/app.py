"""The ASGI application: hot OpenAI routes handled directly, everything else by the admin app."""
from __future__ import annotations

import logging

from reapi.api.admin import build_admin
from reapi.api.chat import chat_completions, new_request_id
from reapi.api.http import send_error
from reapi.api.models import models
from reapi.errors import INTERNAL_ERROR, GatewayError
from reapi.gateway import Gateway
from reapi.settings import Settings

log = logging.getLogger("reapi")


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


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env()
    setup_logging(settings.log_level)
    gw = Gateway(settings)
    admin = build_admin(gw)

    async def app(scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path == "/v1/chat/completions":
                if scope["method"] == "POST":
                    return await chat_completions(gw, scope, receive, send)
                return await _error(send, GatewayError(405, "Use POST for /v1/chat/completions.",
                                                       code="method_not_allowed"))
            if path.startswith("/v1/messages"):
                from reapi.api.messages import messages

                return await messages(gw, scope, receive, send)
            if path.startswith("/v1/models"):
                headers = [(b"x-request-id", new_request_id().encode())]
                try:
                    return await models(gw, scope, receive, send, headers)
                except GatewayError as err:
                    return await send_error(send, err, headers)
                except Exception:
                    log.exception("models route failed")
                    return await send_error(send, INTERNAL_ERROR, headers)
            if path.startswith("/v1/"):
                return await _error(send, GatewayError(404, f"Unknown route {path}.", code="unknown_url"))
            return await admin(scope, receive, send)
        if kind == "lifespan":
            return await _lifespan(gw, receive, send)
        return await admin(scope, receive, send)

    app.gateway = gw  # type: ignore[attr-defined]  # for tests and the CLI
    return app


async def _error(send, err: GatewayError) -> None:
    await send_error(send, err, [(b"x-request-id", new_request_id().encode())])


async def _lifespan(gw: Gateway, receive, send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            try:
                await gw.start()
            except Exception as exc:
                log.exception("gateway failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await gw.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
