"""The operator console's page table: every page auth="admin"."""
from __future__ import annotations

from reapi.web import Page

_M = "reapi.admin_console"
PAGES: list[Page] = [
    Page("GET", "/admin/console", f"{_M}.overview:show", auth="admin", nav="Overview"),
    Page("POST", "/admin/console/ledger/verify", f"{_M}.overview:verify_ledger", auth="admin"),
    Page("GET", "/admin/console/channels", f"{_M}.channels:show", auth="admin", nav="Channels"),
    Page("POST", "/admin/console/channels", f"{_M}.channels:create", auth="admin"),
    Page("GET", "/admin/console/channels/{channel_id:int}", f"{_M}.channels:edit", auth="admin"),
    Page("POST", "/admin/console/channels/{channel_id:int}", f"{_M}.channels:update", auth="admin"),
    Page("POST", "/admin/console/channels/{channel_id:int}/enabled", f"{_M}.channels:set_enabled", auth="admin"),
    Page("POST", "/admin/console/channels/{channel_id:int}/test", f"{_M}.channels:test", auth="admin"),
    Page("POST", "/admin/console/channels/{channel_id:int}/delete", f"{_M}.channels:delete", auth="admin"),
    Page("GET", "/admin/console/models", f"{_M}.models:show", auth="admin", nav="Models"),
    Page("POST", "/admin/console/models", f"{_M}.models:save", auth="admin"),
    Page("GET", "/admin/console/task-models", f"{_M}.task_models:show", auth="admin", nav="Task models"),
    Page("POST", "/admin/console/task-models", f"{_M}.task_models:save", auth="admin"),
    Page("GET", "/admin/console/accounts", f"{_M}.accounts:show", auth="admin", nav="Accounts"),
    Page("POST", "/admin/console/accounts/{account_id:int}/credit", f"{_M}.accounts:credit", auth="admin"),
    Page("GET", "/admin/console/accounts/{account_id:int}", f"{_M}.accounts:detail", auth="admin"),
    Page("POST", "/admin/console/accounts/{account_id:int}/debit", f"{_M}.accounts:debit", auth="admin"),
    Page("GET", "/admin/console/accounts/{account_id:int}/keys", f"{_M}.accounts:keys", auth="admin"),
    Page("POST", "/admin/console/keys/{key_id:int}/revoke", f"{_M}.accounts:revoke", auth="admin"),
    Page("GET", "/admin/console/usage", f"{_M}.accounts:usage", auth="admin", nav="Usage"),
    Page("GET", "/admin/console/groups", f"{_M}.groups:show", auth="admin", nav="Groups"),
    Page("POST", "/admin/console/groups", f"{_M}.groups:save", auth="admin"),
    Page("GET", "/admin/console/codes", f"{_M}.codes:show", auth="admin", nav="Codes"),
    Page("POST", "/admin/console/codes", f"{_M}.codes:mint", auth="admin"),
    Page("GET", "/admin/console/codes.csv", f"{_M}.codes:csv", auth="admin"),
]
