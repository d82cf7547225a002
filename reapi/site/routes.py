"""The public site's page table (all auth="public")."""
from __future__ import annotations

from reapi.web import Page

PAGES: list[Page] = [
    Page("GET", "/", "reapi.site.pages:home", auth="public", nav="Models"),
    Page("GET", "/pricing", "reapi.site.pages:pricing", auth="public", nav="Pricing"),
    Page("GET", "/docs", "reapi.site.pages:docs_index", auth="public", nav="Docs"),
    Page("GET", "/docs/{model:path}", "reapi.site.pages:docs_model", auth="public"),  # names may hold "/"
    Page("GET", "/llms.txt", "reapi.site.pages:llms_txt", auth="public"),
    Page("GET", "/openapi.json", "reapi.site.pages:openapi", auth="public"),
]
