"""The task gateway's routes under /api/v1 (reAPI's shape): its own keys (rk_live_), its own
error envelope {"error": {"code", "message", "request_id"}}, no framework (a poll is a few
microseconds of routing and one indexed read).

    POST /api/v1/{images,videos,audio}/generations   submit (hold the cost, store the task)
    GET  /api/v1/tasks/{id}                          poll (from the store, never the upstream)
    GET  /api/v1/tasks?status=&limit=&after=         the account's tasks, newest first
    POST /api/v1/quote                               the exact cost of a submit body
    GET  /api/v1/models                              the task models this key may use
    GET  /api/v1/balance                             the tasks wallet in credits
    GET  /api/v1/tasks/{id}/deliveries               the task's webhook deliveries and their attempts
    GET  /api/v1/webhooks/secret                     the account's webhook signing secret (whsec_...)
    POST /api/v1/webhooks/secret/rotate              a new secret (the old one also signs for 24 h)
"""
from __future__ import annotations

import logging
import uuid
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import select

from reapi.asgi import ClientGone, bearer, header, read_body
from reapi.billing.money import format_credits, format_usd
from reapi.catalog import ApiKey, TaskModel
from reapi.errors import GatewayError
from reapi.limits import Rule
from reapi.store import queries as store_queries
from reapi.store import schema
from reapi.store.cache import hash_key
from reapi.tasks import lifecycle, queries
from reapi.tasks.errors import TaskError, invalid, missing
from reapi.tasks.ids import is_task_id
from reapi.tasks.params import validate
from reapi.tasks.paths import PREFIX, SUBMIT_ENDPOINTS, TASK_ROUTES
from reapi.tasks.pricing import cost_nano, quantity

log = logging.getLogger("reapi.tasks")

BODY_MAX = 1 << 20  # media are URLs, so 1 MiB is plenty for any submit body
ENDPOINTS = {f"{PREFIX}/{e}/generations": e for e in SUBMIT_ENDPOINTS}
OUR_FIELDS = ("webhook_url",)  # ours, never sent upstream
IDEMPOTENCY_MAX = 255


def new_request_id() -> str:
    return "req_" + uuid.uuid4().hex


class Ctx:
    __slots__ = ("gw", "scope", "receive", "request_id", "key")

    def __init__(self, gw, scope, receive) -> None:
        self.gw = gw
        self.scope = scope
        self.receive = receive
        self.request_id = new_request_id()
        self.key: ApiKey | None = None


async def _send(send, status: int, body: bytes, request_id: str, headers: dict[str, str] | None = None) -> None:
    h = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
         (b"x-request-id", request_id.encode())]
    h += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": h})
    await send({"type": "http.response.body", "body": body})


def build_tasks_api(gw) -> Callable[[dict, Any, Any], Awaitable[None]]:
    """The /api/v1 sub-application."""

    async def app(scope, receive, send) -> None:
        ctx = Ctx(gw, scope, receive)
        try:
            status, body = await route(ctx)
            await _send(send, status, orjson.dumps(body), ctx.request_id)
        except TaskError as err:
            await _send(send, err.status, err.body(ctx.request_id), ctx.request_id, err.headers)
        except ClientGone:
            return
        except GatewayError as err:  # from the shared helpers: a too large body
            code = 20007 if err.status == 413 else 20001
            e = TaskError(code, err.message, status=err.status)
            await _send(send, e.status, e.body(ctx.request_id), ctx.request_id)
        except Exception:
            log.exception("task API request %s failed", ctx.request_id)
            e = TaskError(50001, "The gateway hit an internal error; nothing was charged for a failed submit.")
            await _send(send, 500, e.body(ctx.request_id), ctx.request_id)

    return app


async def route(ctx: Ctx) -> tuple[int, Any]:
    """Dispatch from reapi.tasks.paths.TASK_ROUTES (exact paths first, then the {id} templates)."""
    method, path = ctx.scope["method"], ctx.scope["path"]
    fn = _EXACT.get((method, _ALIASES.get(path, path)))
    if fn is not None:
        return 200, await fn(ctx)
    if path in ENDPOINTS:
        raise TaskError(20006, f"Use POST for {path}.", status=405)
    for m, prefix, suffix, handler in _TEMPLATED:
        if method == m and path.startswith(prefix) and path.endswith(suffix) and len(path) > len(prefix) + len(suffix):
            return 200, await handler(ctx, path[len(prefix):len(path) - len(suffix)])
    raise TaskError(20006, f"Unknown route {method} {path}.")


# --- auth and limits ------------------------------------------------------------------------

async def authenticate(ctx: Ctx) -> ApiKey:
    raw = header(ctx.scope, b"authorization")
    if raw is None or not raw.strip():
        raise TaskError(10001, "Missing Authorization header; send Authorization: Bearer rk_live_...")
    token = bearer(ctx.scope)
    if token is None:
        raise TaskError(10002, "Authorization must be a Bearer token: Authorization: Bearer rk_live_...")
    snap = ctx.gw.catalog.snapshot
    digest = hash_key(token)
    key = snap.task_keys.get(digest)
    if key is None:
        if digest in snap.keys:
            raise TaskError(10003, "This is a chat API key (sk-...); the task API takes rk_live_ keys.")
        if await _revoked(ctx.gw, digest):
            raise TaskError(10004, "This API key has been revoked.")
        raise TaskError(10003, "Invalid API key.")
    ctx.key = key
    await rate_limit(ctx, key)
    return key


async def _revoked(gw, digest: str) -> bool:
    K = schema.api_keys
    async with gw.engine.connect() as conn:
        r = (await conn.execute(select(K.c.revoked_at).where(K.c.key_hash == digest,
                                                             K.c.workspace == "tasks"))).first()
    return r is not None and r.revoked_at is not None


def _group(key: ApiKey) -> str:
    return key.groups[0] if key.groups else "default"


async def rate_limit(ctx: Ctx, key: ApiKey) -> None:
    """The key's rpm and the group's per-account rpm (the chat limits' rules, prefixed "tasks:")."""
    g = ctx.gw.catalog.snapshot.groups.get(_group(key))
    rules = []
    if g is not None and g.rpm is not None:
        rules.append(Rule(f"tasks:acct:{g.name}:{key.account_id}", g.rpm, None))
    if key.rpm is not None:
        rules.append(Rule(f"tasks:key:{key.id}", key.rpm, None))
    if not rules:
        return
    decision = await ctx.gw.limiter.admit(rules, 0)
    if not decision.allowed:
        wait = max(1, int(decision.retry_after_s + 0.999))
        raise TaskError(40001, f"Rate limit reached; retry after {wait}s.", headers={"retry-after": str(wait)})


# --- bodies ---------------------------------------------------------------------------------

async def read_json(ctx: Ctx) -> tuple[dict, bytes]:
    raw = await read_body(ctx.scope, ctx.receive, BODY_MAX)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise invalid("body", "is not valid JSON") from None
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    return body, raw


def served(ctx: Ctx, key: ApiKey, name: str) -> bool:
    snap = ctx.gw.catalog.snapshot
    if key.models is not None and name not in key.models:
        return False
    groups = key.groups or ("default",)
    return any((g, name) in snap.task_pools for g in groups)


def resolve_model(ctx: Ctx, key: ApiKey, body: dict, endpoint: str | None) -> TaskModel:
    if "model" not in body:
        raise missing("model")
    name = body.pop("model")
    if not isinstance(name, str) or not name:
        raise invalid("model", "must be a model name")
    model = ctx.gw.catalog.snapshot.task_models.get(name)
    if model is None or not served(ctx, key, name):
        raise TaskError(20003, f"model: unknown model {name[:200]!r} (see GET /api/v1/models)")
    if endpoint is not None and model.endpoint != endpoint:
        raise invalid("model", f"{name} is submitted at /api/v1/{model.endpoint}/generations")
    return model


def priced(ctx: Ctx, key: ApiKey, body: dict, endpoint: str | None) -> tuple[TaskModel, dict, int, str | None]:
    """The model, the body left for the upstream, its cost and the task's webhook URL: the body's
    `webhook_url` if it has one, none if it says null, else the key's default (checked when the
    key was made, and again by every delivery)."""
    model = resolve_model(ctx, key, body, endpoint)
    if "webhook_url" in body:
        webhook = body.pop("webhook_url")
        if webhook is not None:
            check_webhook(ctx, webhook)
    else:
        webhook = key.webhook_url
    validate(model.params, body)
    return model, body, cost_nano(model, body), webhook


def check_webhook(ctx: Ctx, url: object) -> None:
    """An http(s) URL whose host is not private or loopback (unless REAPI_WEBHOOK_ALLOW_PRIVATE=1);
    the rule a tasks key's default meets too (reapi.webhooks.check_webhook_url); its addresses are
    checked again at every delivery."""
    from reapi.webhooks import TargetRefused, check_webhook_url

    try:
        check_webhook_url(url, ctx.gw.settings.webhook_allow_private)
    except TargetRefused as exc:
        raise TaskError(20001, str(exc)) from None


def idempotency_key(ctx: Ctx) -> str | None:
    raw = header(ctx.scope, b"idempotency-key")
    if raw is None:
        return None
    if not 1 <= len(raw) <= IDEMPOTENCY_MAX or any(c < 0x21 or c > 0x7e for c in raw):
        raise invalid("Idempotency-Key", f"must be 1 to {IDEMPOTENCY_MAX} visible ASCII characters")
    return raw.decode("ascii")


# --- the routes -----------------------------------------------------------------------------

async def submit(ctx: Ctx, endpoint: str) -> dict:
    key = await authenticate(ctx)
    idem = idempotency_key(ctx)
    body, raw = await read_json(ctx)
    model, body, cost, webhook = priced(ctx, key, body, endpoint)
    done = await lifecycle.submit(ctx.gw.engine, key=key, model=model, body=body, cost_nano=cost,
                                  webhook_url=webhook, group=_group(key),
                                  idempotency=None if idem is None else (idem, lifecycle.body_hash(raw)))
    if not done.replayed:
        wake = getattr(ctx.gw, "task_worker", None)
        if wake is not None:
            wake.wake()
    t = done.task
    return {"id": t["id"], "model": t["model"], "status": queries.PUBLIC_STATUS[t["status"]],
            "created_at": t["created_at"] // 1000}


async def quote(ctx: Ctx) -> dict:
    key = await authenticate(ctx)
    body, _ = await read_json(ctx)
    model, body, cost, _ = priced(ctx, key, body, None)
    return {"model": model.name, "cost_credits": format_credits(cost), "cost_usd": format_usd(cost),
            "unit": model.unit, "quantity": quantity(model, body)}


async def get_task(ctx: Ctx, task_id: str) -> dict:
    key = await authenticate(ctx)
    if not is_task_id(task_id):
        raise TaskError(20005, "No such task.")
    fast = polls_of(ctx.gw)
    if fast is not None:
        t = fast.one(task_id, key.account_id, origin(ctx))
    else:
        async with ctx.gw.engine.connect() as conn:
            t = await queries.one(conn, task_id, key.account_id, origin(ctx))
    if t is None:
        raise TaskError(20005, "No such task.")
    return t


def origin(ctx: Ctx) -> str:
    """REAPI_PUBLIC_URL, else the scheme and host this request was sent to (shown back to its sender only)."""
    if ctx.gw.settings.public_url:
        return ctx.gw.settings.public_url
    host = header(ctx.scope, b"host")
    if host is None or not host or any(c <= 0x20 or c in b"/\\?#@" for c in host) or len(host) > 255:
        return ""
    return f"{ctx.scope.get('scheme', 'http')}://{host.decode('latin-1')}"


def polls_of(gw) -> queries.SQLitePolls | None:
    """SQLite: this process's read-only poll connection (PostgreSQL polls go through the engine)."""
    if gw.engine.dialect.name != "sqlite":
        return None
    if gw.task_polls is None:
        from reapi.store.db import sqlite_path

        gw.task_polls = queries.SQLitePolls(sqlite_path(gw.engine.url))
    return gw.task_polls


def _query(ctx: Ctx) -> dict[str, str]:
    qs = ctx.scope.get("query_string", b"").decode("latin-1")
    try:
        return dict(parse_qsl(qs, strict_parsing=False, max_num_fields=10))
    except ValueError:
        raise invalid("query", "has too many fields") from None


PUBLIC_FIELDS = ("id", "model", "status", "created_at", "output", "error", "cost_credits", "progress",
                 "completed_at", "expires_at")


async def list_tasks(ctx: Ctx) -> dict:
    key = await authenticate(ctx)
    q = _query(ctx)
    status = q.get("status")
    if status is not None and status not in queries.INTERNAL:
        raise invalid("status", "must be processing, completed or failed")
    try:
        limit = int(q.get("limit", "20"))
    except ValueError:
        raise invalid("limit", "must be an integer from 1 to 100") from None
    if not 1 <= limit <= 100:
        raise invalid("limit", "must be an integer from 1 to 100")
    after = q.get("after")
    if after is not None and not is_task_id(after):
        raise invalid("after", "must be a task id")
    async with ctx.gw.engine.connect() as conn:
        rows = await queries.page(conn, key.account_id, status=status, limit=limit, after=after, origin=origin(ctx))
    data = [{k: r[k] for k in PUBLIC_FIELDS} for r in rows]
    return {"object": "list", "data": data, "has_more": len(data) == limit,
            "last_id": data[-1]["id"] if data else None}


async def list_models(ctx: Ctx) -> dict:
    key = await authenticate(ctx)
    snap = ctx.gw.catalog.snapshot
    data = []
    for name in sorted(snap.task_models):
        if not served(ctx, key, name):
            continue
        m = snap.task_models[name]
        prices = [int(s.nano_per_unit) for s in m.skus]
        data.append({"id": name, "object": "model", "category": m.category,
                     "endpoint": f"/api/v1/{m.endpoint}/generations", "unit": m.unit, "quantity": list(m.quantity),
                     "pricing": {"min_credits_per_unit": format_credits(min(prices)),
                                 "max_credits_per_unit": format_credits(max(prices)),
                                 "skus": [{"when": s.when, "credits_per_unit": format_credits(s.nano_per_unit)}
                                          for s in m.skus]},
                     "max_seconds": m.max_seconds, "description": m.description})
    return {"object": "list", "data": data}


async def deliveries(ctx: Ctx, task_id: str) -> dict:
    from reapi.webhooks import deliveries as of_task

    key = await authenticate(ctx)
    if not is_task_id(task_id):
        raise TaskError(20005, "No such task.")
    async with ctx.gw.engine.connect() as conn:
        if await queries.one(conn, task_id, key.account_id) is None:
            raise TaskError(20005, "No such task.")
    return {"object": "list", "data": await of_task(ctx.gw.engine, task_id, key.account_id)}


async def webhook_secret(ctx: Ctx, *, rotate: bool) -> dict:
    from reapi import webhooks

    key = await authenticate(ctx)
    fn = webhooks.rotate_secret if rotate else webhooks.secret
    return {"object": "webhook_secret", "secret": await fn(ctx.gw.engine, key.account_id)}


async def balance(ctx: Ctx) -> dict:
    key = await authenticate(ctx)
    async with ctx.gw.engine.connect() as conn:
        nano = (await store_queries.balances(conn, key.account_id)).get("tasks", 0)
    return {"object": "balance", "credits": format_credits(nano), "usd": format_usd(nano)}


# --- the route table --------------------------------------------------------------------------

_HANDLERS: dict[str, Callable[..., Awaitable[Any]]] = {
    "submit": lambda ctx: submit(ctx, ENDPOINTS[ctx.scope["path"]]), "quote": quote, "list_tasks": list_tasks,
    "get_task": get_task, "deliveries": deliveries, "list_models": list_models, "balance": balance,
    "webhook_secret": lambda ctx: webhook_secret(ctx, rotate=False),
    "rotate_secret": lambda ctx: webhook_secret(ctx, rotate=True)}
assert set(_HANDLERS) == {r.handler for r in TASK_ROUTES}, "every handler has its row in TASK_ROUTES"
_EXACT = {(r.method, r.path): _HANDLERS[r.handler] for r in TASK_ROUTES if "{" not in r.path}
_ALIASES = {f"{PREFIX}/tasks/": f"{PREFIX}/tasks"}
# (method, prefix, suffix, handler(ctx, id)), the longest suffix first: /tasks/{id}/deliveries before /tasks/{id}
_TEMPLATED = sorted(((r.method, *r.path.split("{id}"), _HANDLERS[r.handler]) for r in TASK_ROUTES if "{id}" in r.path),
                    key=lambda t: -len(t[2]))
