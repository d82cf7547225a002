"""The console's page table: one line per page (method, path, "module:function", who, nav label).

Handlers are imported on first use. Another module adds a page with one line here, e.g.
    Page("GET", "/console/topup", "reapi.console.topup:show", nav="Top up"),
"""
from __future__ import annotations

from reapi.web import Page

PAGES: list[Page] = [
    Page("GET", "/console", "reapi.console.dashboard:show", nav="Dashboard"),
    Page("GET", "/console/keys", "reapi.console.keys:show", nav="API keys"),
    Page("POST", "/console/keys", "reapi.console.keys:create"),
    Page("POST", "/console/keys/{key_id:int}/revoke", "reapi.console.keys:revoke"),
    Page("GET", "/console/topup", "reapi.console.topup:show", nav="Top up"),
    Page("POST", "/console/topup/redeem", "reapi.console.topup:redeem"),
    Page("POST", "/console/topup/stripe", "reapi.console.topup:stripe"),
    Page("GET", "/console/usage", "reapi.console.usage:show", nav="Usage"),
    Page("GET", "/console/usage.csv", "reapi.console.usage:csv"),
    Page("GET", "/console/billing", "reapi.console.billing:show", nav="Billing"),
    Page("GET", "/console/account", "reapi.console.account:show", nav="Account"),
    Page("POST", "/console/account/password", "reapi.console.account:change_password"),
    Page("GET", "/signup", "reapi.console.auth:signup_form", auth="public"),
    Page("POST", "/signup", "reapi.console.auth:signup", auth="public"),
    Page("GET", "/signup/verify", "reapi.console.auth:verify", auth="public"),
    Page("GET", "/login", "reapi.console.auth:login_form", auth="public"),
    Page("POST", "/login", "reapi.console.auth:login", auth="public"),
    Page("POST", "/logout", "reapi.console.auth:logout", auth="public"),
    Page("GET", "/password/forgot", "reapi.console.auth:forgot_form", auth="public"),
    Page("POST", "/password/forgot", "reapi.console.auth:forgot", auth="public"),
    Page("GET", "/password/reset", "reapi.console.auth:reset_form", auth="public"),
    Page("POST", "/password/reset", "reapi.console.auth:reset", auth="public"),
]
