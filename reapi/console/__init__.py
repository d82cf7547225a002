"""The customer console: sign-up and sign-in, the dashboard, API keys, account settings (and,
from the "money" wing's modules, top-up, usage and billing), as server-rendered pages on
reapi.web.

The page table is reapi.console.routes.PAGES: adding a page is one line there. Pages only
translate forms to reapi.operations calls and rows to a template context; every rule (who may
sign up, throttles, key limits, money) lives in the operations.

May import: web, operations, store (reads), billing.money, mail, settings, errors. Never
another wing (api, admin, proxy, site).
"""
from __future__ import annotations

from reapi.web import WebApp


def build_console(gw) -> WebApp:
    from reapi.console.routes import PAGES

    return WebApp(gw, PAGES)
