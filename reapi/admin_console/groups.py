"""Groups: every group (stored, `default`, or named by a channel) with its rate limits, and a form
that sets rpm / tpm / total_rpm / total_tpm through ops.set_group (blank = unlimited)."""
from __future__ import annotations

from urllib.parse import quote

from reapi import operations as ops
from reapi.admin_console.common import integer, read, write
from reapi.errors import GatewayError
from reapi.store import queries
from reapi.web import Request, Response, redirect, render

LIMITS = ("rpm", "tpm", "total_rpm", "total_tpm")


async def show(req: Request, *, error: str | None = None, status: int = 200) -> Response:
    rows = {r["name"]: r for r in await read(req, queries.list_groups)}
    names = set(rows) | {"default"}
    for ch in await read(req, queries.list_channels):
        names.update(ch["groups"] or ())
    groups = [{"name": n, **{k: rows.get(n, {}).get(k) for k in LIMITS}, "stored": n in rows}
              for n in sorted(names)]
    saved = req.query.get("saved", "")[:200]
    return render(req, "admin/groups.html", {"title": "Groups", "groups": groups, "limits": LIMITS, "error": error,
                                             "notice": f"Saved group {saved}." if saved else None}, status=status)


async def save(req: Request) -> Response:
    f = await req.form()
    name = (f.get("name") or "").strip()
    try:
        await write(req, ops.set_group, name, **{k: integer(f.get(k)) for k in LIMITS})
    except GatewayError as err:
        return await show(req, error=f"Group {name[:64]}: {err.message}", status=err.status)
    return redirect(f"/admin/console/groups?saved={quote(name, safe='')}")
