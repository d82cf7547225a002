"""API keys: /admin/accounts/{id}/keys and /admin/keys/{id}."""
from __future__ import annotations

from fastapi import APIRouter

from reapi import operations as ops
from reapi.admin.common import Gw, Id, iso, read, write
from reapi.billing.money import format_usd
from reapi.operations.inputs import KeyIn
from reapi.store import queries

router = APIRouter(tags=["keys"])


def usd_or_none(nano: int | None) -> str | None:
    return None if nano is None else format_usd(nano)


def key_out(r: dict) -> dict:
    """A key as the admin API shows it: money as decimal strings, never its hash."""
    return {"id": r["id"], "account_id": r["account_id"], "name": r["name"], "key_prefix": r["key_prefix"],
            "workspace": r.get("workspace", "chat"), "groups": r["groups"], "models": r["models"],
            "spend_limit_usd": usd_or_none(r["spend_limit_nano"]), "spent_usd": format_usd(r["spent_nano"]),
            "rpm": r["rpm"], "tpm": r["tpm"], "revoked": r["revoked_at"] is not None,
            "revoked_at": iso(r["revoked_at"]), "created_at": iso(r["created_at"]),
            "expires_at": iso(r.get("expires_at")), "webhook_url": r.get("webhook_url")}


@router.post("/admin/accounts/{account_id}/keys", status_code=201)
async def create_key(gw: Gw, account_id: Id, body: KeyIn) -> dict:
    """A new key; `key` is shown once (only its hash is stored). workspace "tasks" makes an rk_live_ key,
    which may carry a default `webhook_url` for its tasks."""
    k = await write(gw, ops.create_key, account_id, **body.model_dump(),
                    allow_private_webhooks=gw.settings.webhook_allow_private)
    return {"id": k["id"], "key": k["key"], "account_id": account_id, "name": k["name"],
            "workspace": k["workspace"], "groups": k["groups"], "models": k["models"],
            "spend_limit_usd": usd_or_none(k["spend_limit_nano"]), "expires_at": iso(k["expires_at"]),
            "webhook_url": k["webhook_url"]}


@router.get("/admin/accounts/{account_id}/keys")
async def list_keys(gw: Gw, account_id: Id) -> dict:
    return {"object": "list", "data": [key_out(r) for r in await read(gw, queries.list_keys, account_id)]}


@router.delete("/admin/keys/{key_id}")
async def revoke_key(gw: Gw, key_id: Id) -> dict:
    await write(gw, ops.revoke_key, key_id)
    return {"id": key_id, "revoked": True}
