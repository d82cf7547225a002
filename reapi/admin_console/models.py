"""Models and prices: the rate card with each model's public catalog entry; one form sets a model's
price, long-context tier, aliases, description, category, tags and visibility (ops.set_price, the
function behind PUT /admin/models/{model}). Validation errors are shown on the form."""
from __future__ import annotations

from reapi import operations as ops
from reapi.admin_console.common import integer, listed, opt, read, write
from reapi.errors import GatewayError
from reapi.operations.inputs import CATEGORIES
from reapi.store import queries
from reapi.web import Request, Response, render, redirect


async def show(req: Request, *, form: dict | None = None, error: str | None = None, status: int = 200) -> Response:
    models = [ops.model_view(r) for r in await read(req, queries.list_models)]
    editing = req.query.get("model")
    if form is None:
        form = {}
        current = next((m for m in models if m["model"] == editing), None)
        if current is not None:
            lc = current["long_context"] or {}
            form = {"model": current["model"], "input": current["input_usd_per_mtok"],
                    "output": current["output_usd_per_mtok"],
                    "cached_input": current["cached_input_usd_per_mtok"] or "",
                    "cache_write": current["cache_write_usd_per_mtok"] or "",
                    "context_window": current["context_window"], "max_output": current["max_output_tokens"],
                    "lc_threshold": lc.get("threshold_tokens", ""), "lc_input": lc.get("input_multiplier", ""),
                    "lc_output": lc.get("output_multiplier", ""), "aliases": ", ".join(current["aliases"]),
                    "description": current["description"] or "", "category": current["category"],
                    "tags": ", ".join(current["tags"]), "hidden": current["hidden"]}
    notice = "Price saved." if req.query.get("done") == "saved" else None
    return render(req, "admin/models.html", {"title": "Models", "models": models, "error": error,
                                             "notice": notice, "_form": form, "_categories": CATEGORIES},
                  status=status)


async def save(req: Request) -> Response:
    f = await req.form()
    long_context = None
    if opt(f.get("lc_threshold")):
        long_context = {"threshold_tokens": integer(f.get("lc_threshold")), "input_multiplier": f.get("lc_input", ""),
                        "output_multiplier": f.get("lc_output", "")}
    try:
        await write(req, ops.set_price, f.get("model", "").strip(), input_usd_per_mtok=f.get("input", ""),
                    output_usd_per_mtok=f.get("output", ""), cached_input_usd_per_mtok=opt(f.get("cached_input")),
                    cache_write_usd_per_mtok=opt(f.get("cache_write")),
                    context_window=integer(f.get("context_window"), 128_000),
                    max_output_tokens=integer(f.get("max_output"), 16_384), long_context=long_context,
                    aliases=listed(f.get("aliases")), description=f.get("description", ""),
                    category=opt(f.get("category")) or "chat", tags=listed(f.get("tags")),
                    hidden=f.get("hidden") == "on")
    except GatewayError as err:
        form = {k: v for k, v in f.items() if k != "csrf_token"}
        form["hidden"] = f.get("hidden") == "on"
        msg = f"{err.param}: {err.message}" if err.param and err.param not in err.message else err.message
        return await show(req, form=form, error=msg, status=err.status)
    return redirect("/admin/console/models?done=saved")
