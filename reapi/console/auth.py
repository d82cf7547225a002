"""Sign-up, sign-in, sign-out, password reset and e-mail verification pages."""
from __future__ import annotations

import logging

from reapi import mail
from reapi.console.common import link, mail_ready, safe_next, sign_in_browser, write
from reapi.errors import GatewayError
from reapi.operations import users
from reapi.web import Request, Response, redirect, render
from reapi.web import sessions
from reapi.web.http import cookie

log = logging.getLogger("reapi.console")


def _signup_rule(req: Request) -> users.SignUp:
    return users.SignUp(req.settings.signup, mail_ready(req), req.settings.signups_per_hour)


def _form_page(req: Request, template: str, status: int = 200, **ctx) -> Response:
    resp = render(req, template, {"title": ctx.pop("title", ""), **ctx}, status)
    return resp


def _refused(req: Request, template: str, err: GatewayError, **ctx) -> Response:
    resp = _form_page(req, template, err.status, error=err.message, code=err.code, **ctx)
    resp.headers.extend(err.headers.items())
    return resp


async def signup_form(req: Request) -> Response:
    if req.user:
        return redirect("/console")
    rule = _signup_rule(req)
    closed = None
    try:
        users.signup_allowed(rule)
    except GatewayError as err:
        closed = err.message
    return _form_page(req, "console/signup.html", title="Sign up", mode=rule.mode, closed=closed, email="")


async def signup(req: Request) -> Response:
    form = await req.form()
    email, password = form.get("email", ""), form.get("password", "")
    rule = _signup_rule(req)
    ctx = {"title": "Sign up", "mode": rule.mode, "email": email[:254]}
    try:
        user = await users.sign_up(req.gateway.engine, rule, email, password, req.client_addr,
                                   req.settings.signup_credit_usd)
    except GatewayError as err:
        closed = err.message if err.code == "signup_closed" else None
        return _refused(req, "console/signup.html", err, closed=closed, **ctx)
    if rule.mode == "verify":
        token = user.pop("verify_token")
        await _mail(req, user["email"], "Confirm your e-mail address",
                    f"Follow this link to confirm your address and activate your account:\n\n"
                    f"{link(req, '/signup/verify?token=' + token)}\n\nIt works once, for 7 days.")
        return _form_page(req, "console/message.html", title="Check your mail",
                          message="We sent a link to your e-mail address. Follow it to activate your account.")
    await sign_in_browser(req, user["id"])
    return redirect("/console")


async def _mail(req: Request, to: str, subject: str, text: str) -> bool:
    try:
        await mail.send(req.settings, to, subject, text)
        return True
    except mail.MailError as exc:
        log.error("could not send mail (%s)", exc)
        return False


async def verify(req: Request) -> Response:
    try:
        await write(req, users.verify_email, req.query.get("token", ""))
    except GatewayError as err:
        return _form_page(req, "console/message.html", err.status, title="Link not valid", message=err.message)
    return _form_page(req, "console/message.html", title="E-mail confirmed",
                      message="Your e-mail address is confirmed. You can sign in now.", login_link=True)


async def login_form(req: Request) -> Response:
    if req.user:
        return redirect(safe_next(req.query.get("next")))
    notice = "Your password was changed. Sign in with the new one." if req.query.get("reset") == "1" else None
    return _form_page(req, "console/login.html", title="Sign in", email="", next=safe_next(req.query.get("next")),
                      notice=notice, can_reset=mail_ready(req))


async def login(req: Request) -> Response:
    form = await req.form()
    email = form.get("email", "")
    nxt = safe_next(form.get("next"))
    try:
        user = await users.sign_in(req.gateway.engine, email, form.get("password", ""), req.client_addr)
    except GatewayError as err:
        return _refused(req, "console/login.html", err, title="Sign in", email=email[:254], next=nxt,
                        can_reset=mail_ready(req))
    await sign_in_browser(req, user["id"])
    return redirect(nxt)


async def logout(req: Request) -> Response:
    if req.session is not None:
        await sessions.end(req.gateway.engine, req.session.token_hash)
    req.set_cookies.append(cookie(sessions.COOKIE, "", max_age=0, secure=req.secure_cookies()))
    return redirect("/login")


async def forgot_form(req: Request) -> Response:
    return _form_page(req, "console/forgot.html", title="Reset your password", available=mail_ready(req))


async def forgot(req: Request) -> Response:
    if not mail_ready(req):
        return _form_page(req, "console/forgot.html", 503, title="Reset your password", available=False)
    form = await req.form()
    try:
        found = await write(req, users.reset_request, form.get("email", ""), req.client_addr,
                            req.settings.signups_per_hour)
    except GatewayError as err:
        return _refused(req, "console/forgot.html", err, title="Reset your password", available=True)
    if found is not None:
        user, token = found
        await _mail(req, user["email"], "Reset your password",
                    f"Someone (hopefully you) asked to reset the password of {user['email']}.\n\n"
                    f"Follow this link to choose a new one; it works once, within an hour:\n\n"
                    f"{link(req, '/password/reset?token=' + token)}\n\n"
                    "If it was not you, ignore this mail: your password stays as it is.")
    return _form_page(req, "console/message.html", title="Check your mail",
                      message="If an account exists for that address, we sent it a link to reset the password. "
                              "The link works once, within an hour.")


async def reset_form(req: Request) -> Response:
    token = req.query.get("token", "")
    async with req.gateway.engine.connect() as conn:
        live = await users.token_is_live(conn, token, "reset")
    if not live:
        return _form_page(req, "console/message.html", 400, title="Link not valid",
                          message="This reset link was used already, has expired, or is incomplete. "
                                  "Ask for a new one.")
    return _form_page(req, "console/reset.html", title="Choose a new password", token=token)


async def reset(req: Request) -> Response:
    form = await req.form()
    token = form.get("token", "")
    try:
        hashed = await users.hash_password(form.get("password", ""))
        await write(req, users.reset_password, token, hashed)
    except GatewayError as err:
        if err.code == "invalid_token":
            return _form_page(req, "console/message.html", err.status, title="Link not valid", message=err.message)
        return _refused(req, "console/reset.html", err, title="Choose a new password", token=token)
    return redirect("/login?reset=1")
