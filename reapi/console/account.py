"""Account settings: the account id, and a password change (which ends every other session)."""
from __future__ import annotations

from reapi.console.common import write
from reapi.errors import GatewayError
from reapi.operations import users
from reapi.web import Request, Response, render


def _page(req: Request, status: int = 200, **ctx) -> Response:
    u = req.user or {}
    return render(req, "console/account.html", {"title": "Account", "account_id": u.get("account_id"),
                                                "email": u.get("email"), **ctx}, status)


async def show(req: Request) -> Response:
    return _page(req)


async def change_password(req: Request) -> Response:
    form = await req.form()
    user = req.user or {}
    try:
        try:  # the sign-in check, with its throttle: a stolen session cannot guess the password freely
            await users.sign_in(req.gateway.engine, user["email"], form.get("current_password", ""),
                                req.client_addr)
        except GatewayError as err:
            if err.code != "invalid_credentials":
                raise
            raise GatewayError(400, "The current password is not right.", param="current_password") from None
        hashed = await users.hash_password(form.get("new_password", ""))
        ended = await write(req, users.set_password, user["id"], hashed,
                            keep_session=req.session.token_hash if req.session else None)
    except GatewayError as err:
        if err.status not in (400, 429):
            raise
        resp = _page(req, err.status, error=err.message)
        resp.headers.extend(err.headers.items())
        return resp
    return _page(req, changed=True, ended=ended)
