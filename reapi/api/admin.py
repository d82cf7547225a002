"""The operator's HTTP API under /admin (plus the public /pricing and health routes).

Not on the hot path, so it uses FastAPI for validation and the OpenAPI page at
/docs. Money is a decimal string in USD everywhere; floats are refused.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
from datetime import datetime, timezone
from typing import Annotated, Literal
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from reapi import metrics
from reapi.billing.ledger import Credit
from reapi.billing.ledger import run as ledger_run
from reapi.billing.money import (MAX_NANO, MoneyError, format_multiplier, format_rate, format_usd,
                                 parse_multiplier, parse_rate, parse_usd)
from reapi.errors import GatewayError, bad_request, envelope
from reapi.gateway import ADAPTERS, Gateway
from reapi.store import queries

log = logging.getLogger("reapi.admin")

Money = StrictStr | StrictInt


I32 = 2**31 - 1  # the store's INTEGER columns: larger values are refused with 400, not a database error
Id = Annotated[int, Path(ge=1, le=I32)]
NAME_MAX = 200  # the store's name columns are VARCHAR(200)
NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # no control characters (CR/LF would split log lines and headers)
MAX_RATE_MICRO = 10**6 * 10**6  # USD 1,000,000 per 1M tokens
MAX_MULTIPLIER_MILLI = 1000 * 1000  # 1000x


def check_base_url(url: str) -> str:
    """An absolute http(s) URL with a host and nothing a client could smuggle in: no userinfo,
    query, fragment, whitespace or control characters. Raises ValueError."""
    if any(c <= " " or c == "\x7f" for c in url):
        raise ValueError("base_url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise ValueError("base_url is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an absolute http:// or https:// URL with a host")
    if "@" in parts.netloc:
        raise ValueError("base_url must not contain user info (put the credential in api_key)")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("base_url must not have a query or a fragment")
    if port == 0:
        raise ValueError("base_url has an invalid port")
    return url


Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
PathName = Annotated[str, Path(min_length=1, max_length=NAME_MAX, pattern=NAME_PATTERN)]
BaseUrl = Annotated[str, StringConstraints(max_length=2000), AfterValidator(check_base_url)]
# Sent as a header value on every upstream call: visible ASCII only, so CR/LF can never split it.
ApiKey = Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=r"^[\x21-\x7e]+$")]
Names = Annotated[list[Name], Field(min_length=1, max_length=1000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelIn(Strict):
    name: Name
    type: Literal["openai", "anthropic"]
    base_url: BaseUrl
    api_key: ApiKey
    models: Names
    groups: Names = Field(default_factory=lambda: ["default"])
    priority: int = Field(default=0, ge=-I32, le=I32)
    weight: int = Field(default=1, ge=0, le=I32)
    model_map: dict[Name, Name] = Field(default_factory=dict, max_length=1000)
    enabled: bool = True


class ChannelPatch(Strict):
    name: Name | None = None
    type: Literal["openai", "anthropic"] | None = None
    base_url: BaseUrl | None = None
    api_key: ApiKey | None = None
    models: Names | None = None
    groups: Names | None = None
    priority: int | None = Field(default=None, ge=-I32, le=I32)
    weight: int | None = Field(default=None, ge=0, le=I32)
    model_map: dict[Name, Name] | None = Field(default=None, max_length=1000)
    enabled: bool | None = None


class LongContextIn(Strict):
    threshold_tokens: int = Field(ge=0, le=I32)
    input_multiplier: Money
    output_multiplier: Money


class ModelIn(Strict):
    input_usd_per_mtok: Money
    output_usd_per_mtok: Money
    cached_input_usd_per_mtok: Money | None = None
    cache_write_usd_per_mtok: Money | None = None
    context_window: int = Field(gt=0, le=I32)
    max_output_tokens: int = Field(gt=0, le=I32)
    long_context: LongContextIn | None = None


class GroupIn(Strict):
    rpm: int | None = Field(default=None, ge=1, le=I32)
    tpm: int | None = Field(default=None, ge=1, le=I32)
    total_rpm: int | None = Field(default=None, ge=1, le=I32)
    total_tpm: int | None = Field(default=None, ge=1, le=I32)


class AccountIn(Strict):
    name: Name


class CreditIn(Strict):
    amount_usd: Money
    note: str | None = Field(default=None, max_length=2000)


class KeyIn(Strict):
    name: Name = "default"
    groups: Names | None = None
    models: Names | None = None
    spend_limit_usd: Money | None = None
    rpm: int | None = Field(default=None, ge=1, le=I32)
    tpm: int | None = Field(default=None, ge=1, le=I32)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def money(fn, value, param: str, most: int = MAX_NANO) -> int:
    try:
        n = fn(value, param)
    except MoneyError as exc:
        raise bad_request(str(exc), param=param) from None
    if n > most:
        raise bad_request(f"{param} is too large.", param=param)
    return n


def model_out(r: dict) -> dict:
    lc = None
    if r["lc_threshold_tokens"] is not None:
        lc = {"threshold_tokens": r["lc_threshold_tokens"],
              "input_multiplier": format_multiplier(r["lc_input_milli"]),
              "output_multiplier": format_multiplier(r["lc_output_milli"])}
    opt = lambda v: None if v is None else format_rate(v)  # noqa: E731
    return {"model": r["name"], "input_usd_per_mtok": format_rate(r["input_micro"]),
            "output_usd_per_mtok": format_rate(r["output_micro"]),
            "cached_input_usd_per_mtok": opt(r["cached_input_micro"]),
            "cache_write_usd_per_mtok": opt(r["cache_write_micro"]),
            "context_window": r["context_window"], "max_output_tokens": r["max_output_tokens"],
            "long_context": lc}


def account_out(r: dict) -> dict:
    return {"id": r["id"], "name": r["name"], "balance_usd": format_usd(r["balance_nano"]),
            "created_at": iso(r["created_at"])}


def usage_out(r: dict) -> dict:
    return {"request_id": r["request_id"], "key_id": r["key_id"], "model": r["model"], "group": r["group"],
            "channel_id": r["channel_id"], "stream": bool(r["stream"]), "status": r["status"],
            "prompt_tokens": r["prompt_tokens"], "completion_tokens": r["completion_tokens"],
            "cached_tokens": r["cached_tokens"], "cache_write_tokens": r["cache_write_tokens"],
            "hold_usd": format_usd(r["hold_nano"]), "cost_usd": format_usd(r["cost_nano"]),
            "uncollected_usd": format_usd(r["uncollected_nano"]), "error_code": r["error_code"],
            "created_at": iso(r["created_at"]), "settled_at": iso(r["settled_at"])}


def key_out(r: dict) -> dict:
    """A key as the admin API shows it: money as decimal strings, never its hash."""
    return {"id": r["id"], "account_id": r["account_id"], "name": r["name"], "key_prefix": r["key_prefix"],
            "groups": r["groups"], "models": r["models"],
            "spend_limit_usd": None if r["spend_limit_nano"] is None else format_usd(r["spend_limit_nano"]),
            "spent_usd": format_usd(r["spent_nano"]), "rpm": r["rpm"], "tpm": r["tpm"],
            "revoked": r["revoked_at"] is not None, "revoked_at": iso(r["revoked_at"]),
            "created_at": iso(r["created_at"])}


def ledger_out(r: dict) -> dict:
    return {"id": r["id"], "kind": r["kind"], "amount_usd": format_usd(r["amount_nano"]),
            "request_id": r["request_id"], "note": r["note"], "created_at": iso(r["created_at"])}


def not_found(what: str) -> GatewayError:
    return GatewayError(404, f"{what} not found.", type="invalid_request_error", code="not_found")


def build_admin(gw: Gateway) -> FastAPI:
    app = FastAPI(title="reapi admin API", version="0.1.0", docs_url="/docs", redoc_url=None,
                  openapi_url="/openapi.json")

    @app.exception_handler(GatewayError)
    async def _gateway_error(_req: Request, exc: GatewayError) -> Response:
        return Response(exc.body(), status_code=exc.status, media_type="application/json", headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        # Drop the envelope ("body") and pydantic's union-branch tags ("str", "function-after[...]").
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "path", "query")
               and not (isinstance(p, str) and (p in ("str", "int", "float", "bool") or "[" in p))]
        param = ".".join(loc) or None
        msg = f"{param}: {first.get('msg', 'invalid value')}" if param else str(first.get("msg", "invalid request"))
        return Response(envelope(msg, "invalid_request_error", param, None), status_code=400,
                        media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else None
        return Response(envelope(str(exc.detail), "invalid_request_error", None, code),
                        status_code=exc.status_code, media_type="application/json")

    @app.exception_handler(DataError)
    async def _data(_req: Request, _exc: DataError) -> Response:
        # the store refused a value (too long, out of range): the request's fault, not ours
        log.warning("admin request refused by the store: %s", type(_exc.orig).__name__)
        return Response(envelope("A value is too large or invalid for the store.", "invalid_request_error",
                                 None, "invalid_value"), status_code=400, media_type="application/json")

    @app.exception_handler(SQLAlchemyError)
    async def _store(_req: Request, exc: SQLAlchemyError) -> Response:
        # never log the exception's text: it carries the statement's parameters (upstream keys)
        log.error("admin request failed in the store: %s (%s)", type(exc).__name__,
                  type(getattr(exc, "orig", None)).__name__)
        return Response(envelope("The gateway hit an internal error.", "server_error", None, "internal_error"),
                        status_code=500, media_type="application/json")

    @app.exception_handler(Exception)
    async def _crash(_req: Request, _exc: Exception) -> Response:
        return Response(envelope("The gateway hit an internal error.", "server_error", None, "internal_error"),
                        status_code=500, media_type="application/json")

    def admin_auth(request: Request) -> None:
        expected = gw.settings.admin_key
        given = request.headers.get("authorization", "")
        token = given[7:].strip() if given[:7].lower() == "bearer " else ""
        if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
            raise GatewayError(401, "Invalid or missing admin key." if expected else
                               "The admin API is disabled: set REAPI_ADMIN_KEY to enable it.",
                               type="invalid_request_error", code="invalid_admin_key")

    async def write(fn, *args):
        async with gw.engine.begin() as conn:
            result = await fn(conn, *args)
        await gw.catalog.reload()  # this instance sees its own change at once; others within a poll
        return result

    async def read(fn, *args):
        async with gw.engine.connect() as conn:
            return await fn(conn, *args)

    admin = [Depends(admin_auth)]

    # channels
    @app.post("/admin/channels", status_code=201, dependencies=admin, tags=["channels"])
    async def create_channel(body: ChannelIn) -> dict:
        if body.type not in ADAPTERS:
            raise bad_request(f"Unknown channel type '{body.type}'.", param="type")
        cid = await write(queries.create_channel, body.model_dump())
        return await read(queries.get_channel, cid)

    @app.get("/admin/channels", dependencies=admin, tags=["channels"])
    async def list_channels() -> dict:
        return {"object": "list", "data": await read(queries.list_channels)}

    @app.get("/admin/channels/{cid}", dependencies=admin, tags=["channels"])
    async def get_channel(cid: Id) -> dict:
        ch = await read(queries.get_channel, cid)
        if ch is None:
            raise not_found("Channel")
        h = gw.health.state(cid)
        return {**ch, "health": h}

    @app.patch("/admin/channels/{cid}", dependencies=admin, tags=["channels"])
    async def patch_channel(cid: Id, body: ChannelPatch) -> dict:
        changes = body.model_dump(exclude_unset=True)
        if any(v is None for v in changes.values()):
            raise bad_request("Fields cannot be set to null.", param=next(k for k, v in changes.items() if v is None))
        if not await write(queries.update_channel, cid, changes):
            raise not_found("Channel")
        return await read(queries.get_channel, cid)

    @app.delete("/admin/channels/{cid}", dependencies=admin, tags=["channels"])
    async def delete_channel(cid: Id) -> dict:
        if not await write(queries.delete_channel, cid):
            raise not_found("Channel")
        return {"id": cid, "deleted": True}

    @app.post("/admin/channels/{cid}/test", dependencies=admin, tags=["channels"])
    async def test_channel(cid: Id) -> dict:
        from reapi.relay.probe import probe_channel

        ch = gw.catalog.snapshot.channels.get(cid)
        if ch is None:
            raise not_found("Channel")
        return await probe_channel(gw, ch)

    # models (rate card)
    @app.put("/admin/models/{model}", dependencies=admin, tags=["models"])
    async def put_model(model: PathName, body: ModelIn) -> dict:
        rate = MAX_RATE_MICRO
        v = {"input_micro": money(parse_rate, body.input_usd_per_mtok, "input_usd_per_mtok", rate),
             "output_micro": money(parse_rate, body.output_usd_per_mtok, "output_usd_per_mtok", rate),
             "cached_input_micro": None, "cache_write_micro": None,
             "context_window": body.context_window, "max_output_tokens": body.max_output_tokens,
             "lc_threshold_tokens": None, "lc_input_milli": None, "lc_output_milli": None}
        if body.cached_input_usd_per_mtok is not None:
            v["cached_input_micro"] = money(parse_rate, body.cached_input_usd_per_mtok,
                                            "cached_input_usd_per_mtok", rate)
        if body.cache_write_usd_per_mtok is not None:
            v["cache_write_micro"] = money(parse_rate, body.cache_write_usd_per_mtok,
                                           "cache_write_usd_per_mtok", rate)
        if body.long_context is not None:
            lc = body.long_context
            v["lc_threshold_tokens"] = lc.threshold_tokens
            v["lc_input_milli"] = money(parse_multiplier, lc.input_multiplier, "long_context.input_multiplier",
                                        MAX_MULTIPLIER_MILLI)
            v["lc_output_milli"] = money(parse_multiplier, lc.output_multiplier, "long_context.output_multiplier",
                                         MAX_MULTIPLIER_MILLI)
        await write(queries.put_model, model, v)
        return model_out({"name": model, **v})

    @app.get("/admin/models", dependencies=admin, tags=["models"])
    async def list_models() -> dict:
        return {"object": "list", "data": [model_out(r) for r in await read(queries.list_models)]}

    # groups
    @app.put("/admin/groups/{group}", dependencies=admin, tags=["groups"])
    async def put_group(group: PathName, body: GroupIn) -> dict:
        await write(queries.put_group, group, body.model_dump())
        return {"name": group, **body.model_dump()}

    @app.get("/admin/groups", dependencies=admin, tags=["groups"])
    async def list_groups() -> dict:
        rows = await read(queries.list_groups)
        if not any(r["name"] == "default" for r in rows):
            rows.insert(0, {"name": "default", "rpm": None, "tpm": None, "total_rpm": None, "total_tpm": None})
        return {"object": "list", "data": rows}

    # accounts, credits, keys
    @app.post("/admin/accounts", status_code=201, dependencies=admin, tags=["accounts"])
    async def create_account(body: AccountIn) -> dict:
        async with gw.engine.begin() as conn:
            return account_out(await queries.create_account(conn, body.name))

    @app.get("/admin/accounts/{account_id}", dependencies=admin, tags=["accounts"])
    async def get_account(account_id: Id) -> dict:
        r = await read(queries.get_account, account_id)
        if r is None:
            raise not_found("Account")
        return account_out(r)

    @app.post("/admin/accounts/{account_id}/credits", status_code=201, dependencies=admin, tags=["accounts"])
    async def add_credit(account_id: Id, body: CreditIn) -> dict:
        amount = money(parse_usd, body.amount_usd, "amount_usd")
        if amount <= 0:
            raise bad_request("amount_usd must be greater than zero.", param="amount_usd")
        acc = await read(queries.get_account, account_id)
        if acc is None:
            raise not_found("Account")
        if acc["balance_nano"] + amount > MAX_NANO:  # BIGINT: the balance could not hold it
            raise bad_request(f"amount_usd would take the balance above the largest the store holds "
                              f"({format_usd(MAX_NANO)}).", param="amount_usd")
        async with gw.engine.begin() as conn:
            balance = await ledger_run(conn, Credit(account_id, amount, body.note))
        if balance is None:
            raise not_found("Account")
        return {"account_id": account_id, "amount_usd": format_usd(amount), "balance_usd": format_usd(balance),
                "note": body.note}

    @app.post("/admin/accounts/{account_id}/keys", status_code=201, dependencies=admin, tags=["keys"])
    async def create_key(account_id: Id, body: KeyIn) -> dict:
        if await read(queries.get_account, account_id) is None:
            raise not_found("Account")
        v = body.model_dump()
        if body.spend_limit_usd is not None:
            v["spend_limit_nano"] = money(parse_usd, body.spend_limit_usd, "spend_limit_usd")
            if v["spend_limit_nano"] <= 0:
                raise bad_request("spend_limit_usd must be greater than zero.", param="spend_limit_usd")
        kid, secret = await write(queries.create_key, account_id, v)
        return {"id": kid, "key": secret, "account_id": account_id, "name": body.name, "groups": body.groups,
                "models": body.models, "spend_limit_usd": body.spend_limit_usd and format_usd(v["spend_limit_nano"])}

    @app.get("/admin/accounts/{account_id}/keys", dependencies=admin, tags=["keys"])
    async def list_keys(account_id: Id) -> dict:
        rows = await read(queries.list_keys, account_id)
        return {"object": "list", "data": [key_out(r) for r in rows]}

    @app.delete("/admin/keys/{key_id}", dependencies=admin, tags=["keys"])
    async def revoke_key(key_id: Id) -> dict:
        if not await write(queries.revoke_key, key_id):
            if not await read(queries.key_exists, key_id):
                raise not_found("Key")
        return {"id": key_id, "revoked": True}

    @app.get("/admin/accounts/{account_id}/usage", dependencies=admin, tags=["accounts"])
    async def usage(account_id: Id, limit: int = Query(100, ge=1, le=1000), before_id: int | None = Query(None, ge=1, le=I32)) -> dict:
        rows = await read(queries.list_usage, account_id, limit, before_id)
        return {"object": "list", "data": [usage_out(r) for r in rows],
                "next_before_id": rows[-1]["id"] if len(rows) == limit else None}

    @app.get("/admin/accounts/{account_id}/ledger", dependencies=admin, tags=["accounts"])
    async def ledger(account_id: Id, limit: int = Query(100, ge=1, le=1000), before_id: int | None = Query(None, ge=1, le=I32)) -> dict:
        rows = await read(queries.list_ledger, account_id, limit, before_id)
        return {"object": "list", "data": [ledger_out(r) for r in rows],
                "next_before_id": rows[-1]["id"] if len(rows) == limit else None}

    # public
    @app.get("/pricing", tags=["public"])
    async def pricing() -> dict:
        snap = gw.catalog.snapshot
        served = set(snap.served_models(None))
        data = []
        for name in sorted(snap.prices):
            if name not in served:
                continue
            p = snap.prices[name]
            row = model_out({"name": name, "input_micro": p.input_micro, "output_micro": p.output_micro,
                             "cached_input_micro": p.cached_input_micro, "cache_write_micro": p.cache_write_micro,
                             "context_window": p.context_window, "max_output_tokens": p.max_output_tokens,
                             "lc_threshold_tokens": p.long_context and p.long_context.threshold_tokens,
                             "lc_input_milli": p.long_context and p.long_context.input_multiplier_milli,
                             "lc_output_milli": p.long_context and p.long_context.output_multiplier_milli})
            data.append(row)
        return {"object": "list", "currency": "USD", "unit": "per 1M tokens", "data": data}

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        checks = {"store": "ok"}
        try:
            async with gw.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")
        except Exception:
            checks["store"] = "unreachable"
        if gw.settings.redis_url:
            checks["redis"] = "ok" if await gw.redis_ready() else "unreachable"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["ops"])
    async def metrics_route() -> Response:
        body, ctype = await asyncio.to_thread(metrics.render)  # requests keep flowing meanwhile
        return Response(body, media_type=ctype)

    return app
