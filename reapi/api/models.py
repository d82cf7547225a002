"""GET /v1/models and /v1/models/{id}: the models the calling key may use, in OpenAI's or Anthropic's shape.

- Auth: `x-api-key: KEY` (wins when both are sent) or `Authorization: Bearer KEY`, as /v1/messages.
- Shape: Anthropic's when the request carries `anthropic-version` (the anthropic SDK always sends it):
  `{"data": [{"type": "model", "id", "display_name", "created_at" (RFC 3339), "lifecycle", "max_input_tokens",
  "max_tokens"}], "has_more", "first_id", "last_id"}`, newest first, paged by `limit` (1..1000, default 20),
  `after_id` and `before_id`; errors in Anthropic's envelope. Otherwise OpenAI's:
  `{"object": "list", "data": [{"id", "object": "model", "created", "owned_by": "reapi"}]}` by name, errors
  in OpenAI's envelope. `created` / `created_at` is when the model was first priced on this gateway.
- Listed: priced models with an enabled channel in one of the key's groups, by their own names, cut to the
  key's model allow-list. Aliases are not listed; `GET /v1/models/{alias}` answers the model's entry.
- The answer is built once per catalog snapshot and key scope (groups, models), shape and query, then
  served as prebuilt bytes (at most VIEW_LIMIT answers per snapshot are kept).
"""
from __future__ import annotations

import time
from urllib.parse import parse_qsl

import orjson

from reapi.api.messages import authenticate, error_json
from reapi.asgi import Receive, Send, header, send_bytes
from reapi.errors import GatewayError, bad_request
from reapi.gateway import Gateway
from reapi.store.cache import Snapshot

VIEW_LIMIT = 4096  # prebuilt answers kept per snapshot
DEFAULT_LIMIT, MAX_LIMIT = 20, 1000  # Anthropic's page size: default and most


def rfc3339(unix_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_s))


def openai_entry(snap: Snapshot, name: str) -> dict:
    return {"id": name, "object": "model", "created": snap.created.get(name, 0), "owned_by": "reapi"}


def anthropic_entry(snap: Snapshot, name: str) -> dict:
    p = snap.prices[name]
    return {"type": "model", "id": name, "display_name": name, "created_at": rfc3339(snap.created.get(name, 0)),
            "lifecycle": "active", "max_input_tokens": p.context_window, "max_tokens": p.max_output_tokens}


def page(snap: Snapshot, names: list[str], query: bytes) -> dict:
    """One page of Anthropic's list: newest first, `limit` entries after `after_id` / before `before_id`."""
    params = dict(parse_qsl(query.decode("latin-1"))) if query else {}
    raw = params.get("limit", str(DEFAULT_LIMIT))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise bad_request(f"limit: must be an integer from 1 to {MAX_LIMIT}.", param="limit")
    limit = int(raw)
    ordered = sorted(names, key=lambda n: (-snap.created.get(n, 0), n))
    after, before = params.get("after_id"), params.get("before_id")
    if after is not None and before is not None:
        raise bad_request("Send after_id or before_id, not both.", param="before_id")
    for cursor, param in ((after, "after_id"), (before, "before_id")):
        if cursor is not None and cursor not in ordered:
            raise bad_request(f"{param}: unknown model id '{cursor[:200]}'.", param=param)
    if after is not None:
        rest = ordered[ordered.index(after) + 1:]
        items, more = rest[:limit], len(rest) > limit
    elif before is not None:
        head = ordered[:ordered.index(before)]
        items, more = head[-limit:], len(head) > limit
    else:
        items, more = ordered[:limit], len(ordered) > limit
    return {"data": [anthropic_entry(snap, n) for n in items], "has_more": more,
            "first_id": items[0] if items else None, "last_id": items[-1] if items else None}


def listed(gw: Gateway, scope: dict, anthropic: bool) -> bytes:
    """The list answer's bytes, prebuilt per snapshot and key scope."""
    key = authenticate(gw, scope)
    snap = gw.catalog.snapshot
    query = scope.get("query_string", b"") if anthropic else b""
    view = (key.groups, key.models, anthropic, query)
    body = snap.views.get(view)
    if body is None:
        names = snap.served_models(key.groups)
        if key.models is not None:
            names = [m for m in names if m in key.models]
        if anthropic:
            body = orjson.dumps(page(snap, names, query))
        else:
            body = orjson.dumps({"object": "list", "data": [openai_entry(snap, n) for n in names]})
        if len(snap.views) < VIEW_LIMIT:
            snap.views[view] = body
    return body


def retrieved(gw: Gateway, scope: dict, anthropic: bool, name: str) -> bytes:
    key = authenticate(gw, scope)
    snap = gw.catalog.snapshot
    model = snap.aliases.get(name, name)
    allowed = key.models is None or name in key.models
    if not allowed or model not in snap.served_models(key.groups):
        raise GatewayError(404, f"The model '{name[:200]}' does not exist or is not available to this key.",
                           type="invalid_request_error", param="model", code="model_not_found")
    return orjson.dumps(anthropic_entry(snap, model) if anthropic else openai_entry(snap, model))


async def models(gw: Gateway, scope: dict, receive: Receive, send: Send, headers: list) -> None:
    """Answer the list or one model; an error is raised (OpenAI's shape) or, for an Anthropic client,
    answered here in Anthropic's envelope."""
    anthropic = header(scope, b"anthropic-version") is not None
    path = scope["path"].rstrip("/")
    try:
        if scope["method"] != "GET":
            raise GatewayError(405, "Use GET for /v1/models.", code="method_not_allowed")
        if path == "/v1/models":
            body = listed(gw, scope, anthropic)
        else:
            body = retrieved(gw, scope, anthropic, path[len("/v1/models/"):])
    except GatewayError as err:
        if not anthropic:
            raise
        rid = next((v.decode() for k, v in headers if k == b"x-request-id"), "")
        await send_bytes(send, err.status, error_json(err, rid), headers)
        return
    await send_bytes(send, 200, body, headers)
