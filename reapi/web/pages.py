"""The page table's rows, and `render`: one context, answered as HTML or as JSON.

Datasette's rule: every page is a template over a context dict; `?format=json` or
`Accept: application/json` returns that context itself as JSON (keys starting with "_" are
for the template only and stay out of it), so what a page shows and what a script reads
can never disagree.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import orjson

from reapi.web.http import Request, Response
from reapi.web.templates import ENV

Handler = Callable[[Request], Awaitable[Response]]
AUTH = ("public", "user", "admin")  # who may open a page: anyone, a signed-in user, an admin user
_PARAM = re.compile(r"\{(\w+)(?::(int|path))?\}")  # {x}: one segment; {x:int}: an id; {x:path}: the rest
INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Page:
    """One route of a web app. `handler` is a coroutine function or "module:function", imported on
    first use (so a page table costs nothing until its page is opened). `auth` is one of AUTH;
    `nav` is the label of the page's link in the navigation bar (None: not in it)."""
    method: str
    path: str  # "/console/keys/{key_id:int}/revoke"
    handler: Handler | str
    auth: str = "user"
    nav: str | None = None
    pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.auth not in AUTH:
            raise ValueError(f"auth must be one of {AUTH}")

        def part(m: re.Match) -> str:
            if m.group(2) == "int":
                return rf"(?P<{m.group(1)}>[0-9]{{1,10}})"
            return rf"(?P<{m.group(1)}>.+)" if m.group(2) == "path" else rf"(?P<{m.group(1)}>[^/]+)"

        regex = "".join(part(m) if m else re.escape(t) for t, m in _split(self.path))
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))

    def match(self, path: str) -> dict[str, Any] | None:
        m = self.pattern.match(path)
        if m is None:
            return None
        params: dict[str, Any] = dict(m.groupdict())
        for name, kind in _PARAM.findall(self.path):
            if kind == "int":
                params[name] = int(params[name])
                if not 1 <= params[name] <= INT_MAX:  # the store's INTEGER ids: anything else is no page
                    return None
        return params

    def resolve(self) -> Handler:
        if callable(self.handler):
            return self.handler
        module, _, name = self.handler.partition(":")
        fn = getattr(importlib.import_module(module), name)
        object.__setattr__(self, "handler", fn)
        return fn


def _split(path: str):
    pos = 0
    for m in _PARAM.finditer(path):
        if m.start() > pos:
            yield path[pos:m.start()], None
        yield "", m
        pos = m.end()
    if pos < len(path):
        yield path[pos:], None


def _default(obj: Any) -> Any:
    return str(obj)


def public_context(context: dict) -> dict:
    return {k: v for k, v in context.items() if not k.startswith("_")}


def render(req: Request, template: str, context: dict, status: int = 200) -> Response:
    """The page: `template` over `context` as HTML, or the context as JSON for JSON clients."""
    if req.wants_json():
        return Response(status, orjson.dumps(public_context(context), default=_default), "application/json")
    html = ENV.get_template(template).render(**context, req=req, user=req.user, csrf_token=req.csrf_token,
                                             nav=req.scope.get("reapi.nav", ()))
    return Response(status, html.encode(), "text/html; charset=utf-8")


def error_page(req: Request, status: int, message: str) -> Response:
    if req.wants_json():
        return Response(status, orjson.dumps({"error": {"status": status, "message": message}}),
                        "application/json")
    html = ENV.get_template("error.html").render(status=status, message=message, req=req, user=req.user,
                                                 csrf_token=req.csrf_token, nav=req.scope.get("reapi.nav", ()))
    return Response(status, html.encode(), "text/html; charset=utf-8")
