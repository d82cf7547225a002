"""The web floor: what every server-rendered page of reapi stands on (the console now, the
public site and the operator console later).

A small ASGI page framework, no JS build step: a table of pages (`Page`: method, path, handler,
who may see it, nav label) served by `WebApp`; requests with bounded form parsing; server-side
sessions (only the sha256 of the cookie's token is stored); CSRF tokens on every state-changing
form; Jinja2 templates (autoescaped) and static files shipped inside the package; HTML error
pages; security headers; and `render`, which answers one page context as HTML or, for
`?format=json` / `Accept: application/json`, as JSON.

May import: settings, store (schema, db), errors, asgi. Never a wing (api, admin, console, site)
and never operations: business rules live below, in operations, and the pages call them.
"""
from reapi.web.http import Request, Response, WebError, redirect
from reapi.web.pages import Page, render
from reapi.web.app import WebApp

__all__ = ["Request", "Response", "WebError", "redirect", "Page", "render", "WebApp"]
