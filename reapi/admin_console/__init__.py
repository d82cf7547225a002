"""The operator console (/admin/console): server-rendered pages on reapi.web for users with the
admin role: the overview (requests, spend, errors, channels' health), channels (list, add, edit,
enable/disable, delete, test probe), models and prices (with the public catalog's fields), task models
and prices (SKUs in credits and USD, the JSON Schema of parameters), accounts (search,
credit or debit a wallet with a note, an account's recent calls and tasks), keys (list, revoke), usage by
request id, groups, and redemption codes (mint, list used/unused, CSV export, masked).

Every page is auth="admin" (a customer's session gets 403, a guest is sent to sign in); every form
is a POST with the session's CSRF token and calls the same reapi.operations function the admin API
calls. An upstream key is write-only: it is never read back into a page.

May import: web, operations, store (reads: queries, stats), billing.money, reports (csv_line), relay.probe,
errors.
Never another wing (api, admin, console, site).
"""
from __future__ import annotations

from reapi.web import WebApp


def build_admin_console(gw) -> WebApp:
    from reapi.admin_console.routes import PAGES

    return WebApp(gw, PAGES)
