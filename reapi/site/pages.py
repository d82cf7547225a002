"""The public site's pages: each builds one context from the catalog snapshot and renders it
(HTML, or the context itself as JSON for JSON clients)."""
from __future__ import annotations

import orjson

from reapi.billing.money import format_usd
from reapi.site import samples
from reapi.site.catalog import CATEGORIES, entries, find
from reapi.site.errors import error_rows
from reapi.site.params import documented
from reapi.site.tasks import find_task, task_entries
from reapi.web import Request, Response, WebError, render


def _snap(req: Request):
    return req.gateway.catalog.snapshot


def _by_category(items: list[dict]) -> list[dict]:
    return [{"category": c, "models": [m for m in items if m["category"] == c]}
            for c in CATEGORIES if any(m["category"] == c for m in items)]


async def home(req: Request) -> Response:
    models = [e.view() for e in entries(_snap(req))] + [t.view() for t in task_entries(_snap(req))]
    settings = req.gateway.settings
    return render(req, "site/home.html", {
        "title": "Models", "base_url": req.origin(), "signup": settings.signup, "catalog": _by_category(models)})


async def pricing(req: Request) -> Response:
    models = [e.view() for e in entries(_snap(req))]
    tasks = [t.view() for t in task_entries(_snap(req))]
    return render(req, "site/pricing.html", {"title": "Pricing", "currency": "USD", "unit": "per 1M tokens",
                                             "models": models, "task_models": tasks,
                                             "credits_per_usd": 1000})


async def docs_index(req: Request) -> Response:
    models = [e.view() for e in entries(_snap(req))] + [t.view() for t in task_entries(_snap(req))]
    return render(req, "site/docs_index.html", {"title": "Docs", "base_url": req.origin(),
                                                "catalog": _by_category(models)})


async def docs_model(req: Request) -> Response:
    entry = find(_snap(req), req.path_params["model"])
    if entry is None:
        task = find_task(_snap(req), req.path_params["model"])
        if task is not None:
            return _docs_task(req, task)
        raise WebError(404, "No model of that name is served here.")
    base = req.origin()
    model = entry.view()
    ex = entry.example()
    rates = model["usd_per_mtok"]
    return render(req, "site/docs_model.html", {
        "title": entry.name, "model": model, "base_url": base, "endpoint": f"{base}/v1/chat/completions",
        "samples": samples.all_samples(base, entry.name), "parameters": documented(entry.channel_types),
        "example": {**ex, "cost_usd": format_usd(ex["cost_nano"])}, "errors": error_rows(),
        "recipes": [{"title": "Tools (function calling)", "code": samples.tools_recipe(base, entry.name)},
                    {"title": "Reasoning effort", "code": samples.reasoning_recipe(base, entry.name)}],
        "_rates": rates,
        "_stream_example": _stream_example(entry.name), "_response_example": _response_example(entry.name)})


def _docs_task(req: Request, task) -> Response:
    from reapi.site import task_samples
    from reapi.site.tasks import error_rows as task_errors
    from reapi.site.tasks import param_rows

    base = req.origin()
    ex = task.example()
    return render(req, "site/docs_task.html", {
        "title": task.name, "model": task.view(), "base_url": base, "endpoint": base + task.endpoint,
        "samples": task_samples.all_samples(base, task.endpoint, ex["body"]),
        "parameters": param_rows(task.model.params), "example": ex, "errors": task_errors(),
        "_example_json": orjson.dumps(ex["body"]).decode()})


def _response_example(model: str) -> str:
    return orjson.dumps({
        "id": "chatcmpl-...", "object": "chat.completion", "created": 1764633600, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                  "prompt_tokens_details": {"cached_tokens": 0}}}, option=orjson.OPT_INDENT_2).decode()


def _stream_example(model: str) -> str:
    chunk = {"id": "chatcmpl-...", "object": "chat.completion.chunk", "created": 1764633600, "model": model,
             "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}
    last = {**chunk, "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}
    return (f"data: {orjson.dumps(chunk).decode()}\n\n"
            f"data: {orjson.dumps(last).decode()}\n\n"
            "data: [DONE]\n")


async def llms_txt(req: Request) -> Response:
    base = req.origin()
    lines = ["# reapi", "", "> An OpenAI-compatible gateway: POST /v1/chat/completions with a bearer key "
             f"from {base}/console/keys, billed per token from a prepaid balance.", "",
             "## Docs", ""]
    for e in entries(_snap(req)):
        r = e.rates()["base"]
        lines.append(f"- [{e.name}]({base}/docs/{e.name}): {e.summary} Input ${r['input']} / output "
                     f"${r['output']} per 1M tokens.")
    tasks = task_entries(_snap(req))
    if tasks:
        lines += ["", "## Task models (image, video, audio)", "",
                  f"Async: POST the body to the endpoint with an rk_live_ key from {base}/console/keys, then poll "
                  f"GET {base}/api/v1/tasks/{{id}}. 1,000 credits = 1 USD.", ""]
    for t in tasks:
        v = t.view()
        lines.append(f"- [{t.name}]({base}/docs/{t.name}): {t.summary} POST {v['endpoint']}, from "
                     f"{v['from_credits']} credits (${v['from_usd']}) per {v['unit']}.")
    lines += ["", "## API", "", f"- [OpenAPI]({base}/openapi.json): the public API",
              f"- [Pricing]({base}/pricing): the rate card (JSON for API clients)", ""]
    return Response(200, "\n".join(lines).encode(), "text/plain; charset=utf-8")


async def openapi(req: Request) -> Response:
    from reapi.site.openapi import document

    snap = _snap(req)
    doc = document(req.origin(), [e.name for e in entries(snap)], [t.model for t in task_entries(snap)])
    return Response(200, orjson.dumps(doc), "application/json")
