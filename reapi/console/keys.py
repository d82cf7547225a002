"""The API keys page: list, create (the secret shown once), revoke. A user sees and touches only
the keys of their own account: any other id is 404."""
from __future__ import annotations

from reapi import operations as ops
from reapi.billing.money import format_usd
from reapi.console.common import gateway, read, write
from reapi.errors import GatewayError
from reapi.store import queries
from reapi.web import Request, Response, WebError, render

WORKSPACES = ("chat", "tasks")


def key_row(k: dict, last_used: dict[int, int]) -> dict:
    return {"id": k["id"], "name": k["name"], "workspace": k.get("workspace", "chat"),
            "last4": k.get("key_last4"), "prefix": k["key_prefix"], "groups": k["groups"], "models": k["models"],
            "created_at": k["created_at"], "last_used_at": last_used.get(k["id"]),
            "spent_usd": format_usd(k["spent_nano"]),
            "spend_limit_usd": None if k["spend_limit_nano"] is None else format_usd(k["spend_limit_nano"]),
            "expires_at": k.get("expires_at"), "webhook_url": k.get("webhook_url"),
            "revoked": k["revoked_at"] is not None}


async def _keys(conn, account_id: int) -> list[dict]:
    last_used = await queries.keys_last_used(conn, account_id)
    rows = await queries.list_keys(conn, account_id)
    return [key_row(k, last_used) for k in reversed(rows)]


async def _page(req: Request, status: int = 200, **ctx) -> Response:
    keys = await read(req, _keys, req.user["account_id"])  # type: ignore[index]
    return render(req, "console/keys.html", {"title": "API keys", "keys": keys, "workspaces": WORKSPACES,
                                             "form": ctx.pop("form", {}), **ctx}, status)


async def show(req: Request) -> Response:
    return await _page(req)


def _list(raw: str) -> list[str] | None:
    items = [x.strip() for x in raw.split(",") if x.strip()]
    return items or None


async def create(req: Request) -> Response:
    form = await req.form()
    fields = {k: form.get(k, "").strip() for k in ("name", "group", "models", "spend_limit_usd", "expires_at",
                                                    "workspace", "webhook_url")}
    try:
        k = await write(req, ops.create_key, req.user["account_id"],  # type: ignore[index]
                        name=fields["name"] or "default", workspace=fields["workspace"] or "chat",
                        groups=_list(fields["group"]), models=_list(fields["models"]),
                        spend_limit_usd=fields["spend_limit_usd"] or None,
                        expires_at=fields["expires_at"] or None, webhook_url=fields["webhook_url"] or None,
                        allow_private_webhooks=gateway(req).settings.webhook_allow_private, reload=True)
    except GatewayError as err:
        if err.status != 400:
            raise
        return await _page(req, 400, error=err.message, form=fields)
    created = {"id": k["id"], "key": k["key"], "name": k["name"], "workspace": k["workspace"]}
    return await _page(req, 201, created=created)


async def revoke(req: Request) -> Response:
    key_id = req.path_params["key_id"]
    try:
        await write(req, ops.revoke_key, key_id, account_id=req.user["account_id"], reload=True)  # type: ignore
    except GatewayError as err:
        if err.status == 404:
            raise WebError(404, "There is no such key.") from None
        raise
    return await _page(req, revoked=key_id)
