"""/admin/users: console users (each owns one account)."""
from __future__ import annotations

import secrets

from fastapi import APIRouter
from pydantic import Field

from reapi.admin.common import BeforeId, Gw, Limit, iso, page, read, write
from reapi.operations.inputs import Strict

router = APIRouter(prefix="/admin/users", tags=["users"])


class UserIn(Strict):
    email: str = Field(max_length=254)
    password: str | None = Field(default=None, max_length=1024)  # omitted: a random one, returned once
    admin: bool = False


def user_out(u: dict) -> dict:
    return {"id": u["id"], "email": u["email"], "account_id": u["account_id"], "admin": u["is_admin"],
            "verified": u["verified"], "created_at": iso(u["created_at"])}


@router.post("", status_code=201)
async def create_user(gw: Gw, body: UserIn) -> dict:
    """A user with a new account, verified (it can sign in at once). Without `password` a random
    one is made and returned once as `password`."""
    from reapi.operations import users as ops  # argon2 loads with the first user, not with the gateway

    password = body.password if body.password is not None else secrets.token_urlsafe(12)
    ops.normal_email(body.email)
    hashed = await ops.hash_password(password)
    u = await write(gw, ops.create_user, body.email, hashed, is_admin=body.admin, reload=False)
    out = user_out(u)
    if body.password is None:
        out["password"] = password
    return out


@router.get("")
async def list_users(gw: Gw, limit: Limit = 100, before_id: BeforeId = None) -> dict:
    from reapi.operations import users as ops

    return page(await read(gw, ops.list_users, limit, before_id), limit, user_out)
