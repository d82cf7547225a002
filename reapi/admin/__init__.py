"""The operator's HTTP API under /admin: one router per resource (channels, models, groups,
accounts, keys, users, redemption codes), all behind the admin key, all answering errors in OpenAI's
envelope.

Not on the hot path, so it uses FastAPI for validation and the OpenAPI page at /admin/docs. Money is a
decimal string in USD everywhere; floats are refused. The routers only translate HTTP to
reapi.operations calls and rows to JSON: every write and every rule lives in the operations.

May import: operations, store.queries (reads), gateway, billing.money, errors, relay.probe.
"""
from __future__ import annotations

import hmac
import logging

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from reapi.admin import accounts, channels, codes, groups, keys, models, task_models, tasks, users
from reapi.errors import GatewayError, envelope
from reapi.gateway import Gateway
from reapi.operations.inputs import refusal

log = logging.getLogger("reapi.admin")

ROUTERS = (channels.router, models.router, groups.router, accounts.router, keys.router, users.router,
           task_models.router, tasks.router, codes.router)
INTERNAL = envelope("The gateway hit an internal error.", "server_error", None, "internal_error")


def _json(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def _gateway_error(_req: Request, exc: GatewayError) -> Response:
    return _json(exc.body(), exc.status, exc.headers)


async def _invalid(_req: Request, exc: RequestValidationError) -> Response:
    err = refusal(exc, drop=("body", "path", "query"))  # type: ignore[arg-type]
    return _json(err.body(), 400)


async def _http(_req: Request, exc: StarletteHTTPException) -> Response:
    code = "not_found" if exc.status_code == 404 else None
    return _json(envelope(str(exc.detail), "invalid_request_error", None, code), exc.status_code)


async def _data(_req: Request, exc: DataError) -> Response:
    # the store refused a value (too long, out of range): the request's fault, not ours
    log.warning("admin request refused by the store: %s", type(exc.orig).__name__)
    return _json(envelope("A value is too large or invalid for the store.", "invalid_request_error", None,
                          "invalid_value"), 400)


async def _store(_req: Request, exc: SQLAlchemyError) -> Response:
    # never log the exception's text: it carries the statement's parameters (upstream keys)
    log.error("admin request failed in the store: %s (%s)", type(exc).__name__,
              type(getattr(exc, "orig", None)).__name__)
    return _json(INTERNAL, 500)


async def _crash(_req: Request, _exc: Exception) -> Response:
    return _json(INTERNAL, 500)  # Starlette re-raises it after this answer: uvicorn logs it once


def admin_auth(request: Request) -> None:
    expected = request.app.state.gateway.settings.admin_key
    given = request.headers.get("authorization", "")
    token = given[7:].strip() if given[:7].lower() == "bearer " else ""
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise GatewayError(401, "Invalid or missing admin key." if expected else
                           "The admin API is disabled: set REAPI_ADMIN_KEY to enable it.",
                           type="invalid_request_error", code="invalid_admin_key")


def build_admin(gw: Gateway) -> FastAPI:
    """The admin sub-application (also serving its OpenAPI page at /admin/docs and /admin/openapi.json)."""
    app = FastAPI(title="reapi admin API", version="0.1.0", docs_url="/admin/docs", redoc_url=None,
                  openapi_url="/admin/openapi.json", swagger_ui_oauth2_redirect_url="/admin/docs/oauth2-redirect")
    app.state.gateway = gw
    for exc, handler in ((GatewayError, _gateway_error), (RequestValidationError, _invalid),
                         (StarletteHTTPException, _http), (DataError, _data), (SQLAlchemyError, _store),
                         (Exception, _crash)):
        app.add_exception_handler(exc, handler)
    for router in ROUTERS:
        app.include_router(router, dependencies=[Depends(admin_auth)])
    return app
