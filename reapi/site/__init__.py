"""The public site: the home page with the model catalog, the HTML rate card (/pricing for
browsers), the generated docs (/docs, /docs/{model}), the public API's OpenAPI document and
/llms.txt, all server-rendered on reapi.web from the catalog snapshot billing uses (one source of
prices) and the validator's own rules (reapi.api.validation.parameter_rules: one source of ranges).

The page table is reapi.site.routes.PAGES. Nothing here writes; nothing here is imported by the
chat path (reapi.app mounts it lazily).

May import: web, catalog, store.cache (the snapshot), billing (money, pricing), api.validation
(its rule tables only), settings, errors. Never another wing's routes (admin, console, admin_console).
"""
from __future__ import annotations

from reapi.web import WebApp


def build_site(gw) -> WebApp:
    from reapi.site.routes import PAGES

    return WebApp(gw, PAGES)
