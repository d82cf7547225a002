"""Channels: the list with each one's health, add, edit, enable/disable and the test probe. The
upstream key and base URL are write-only: the forms take them (on the edit form a blank field keeps
the stored value), no page shows them again (queries.channel_row never carries them)."""
from __future__ import annotations

from typing import get_args

from reapi import operations as ops
from reapi.admin_console.common import integer, listed, read, write
from reapi.admin_console.overview import channel_health
from reapi.errors import GatewayError
from reapi.operations.inputs import ChannelType, not_found
from reapi.store import queries
from reapi.web import Request, Response, render, redirect


async def show(req: Request, *, form: dict | None = None, error: str | None = None, probe: dict | None = None,
               status: int = 200) -> Response:
    rows = await read(req, queries.list_channels)
    health = {h["id"]: h for h in await channel_health(req, queries.now_ms())}
    channels = [{**ch, "health": health.get(ch["id"])} for ch in rows]
    notice = {"added": "Channel added.", "enabled": "Channel enabled.",
              "disabled": "Channel disabled.", "deleted": "Channel deleted.",
              "saved": "Channel saved."}.get(req.query.get("done", ""))
    return render(req, "admin/channels.html", {"title": "Channels", "channels": channels, "error": error,
                                               "notice": notice, "probe": probe, "_form": form or {}},
                  status=status)


async def create(req: Request) -> Response:
    f = await req.form()
    try:
        await write(req, ops.create_channel, name=f.get("name", ""), type=f.get("type", ""),
                    base_url=f.get("base_url", ""), api_key=f.get("api_key", ""), models=listed(f.get("models")),
                    groups=listed(f.get("groups")) or ["default"], priority=integer(f.get("priority"), 0),
                    weight=integer(f.get("weight"), 1))
    except GatewayError as err:
        form = {k: v for k, v in f.items() if k not in ("api_key", "base_url", "csrf_token")}  # never echoed
        return await show(req, form=form, error=_message(err), status=err.status)
    return redirect("/admin/console/channels?done=added")


async def edit(req: Request, *, form: dict | None = None, error: str | None = None, status: int = 200) -> Response:
    """GET: one channel's edit form, filled from the store (never with its key)."""
    cid = req.path_params["channel_id"]
    ch = await read(req, queries.get_channel, cid)
    if ch is None:
        raise not_found("Channel", cid)
    if form is None:
        form = {"name": ch["name"], "type": ch["type"], "models": ", ".join(ch["models"]),
                "groups": ", ".join(ch["groups"]), "priority": str(ch["priority"]), "weight": str(ch["weight"])}
    return render(req, "admin/channel_edit.html", {"title": f"Channel {cid}", "channel": ch, "error": error,
                                                   "_form": form, "_types": get_args(ChannelType)}, status=status)


async def update(req: Request) -> Response:
    """POST: save the edit form through ops.update_channel (PATCH /admin/channels/{id}'s function);
    a blank upstream key keeps the stored one."""
    f = await req.form()
    cid = req.path_params["channel_id"]
    changes = {"name": f.get("name", ""), "type": f.get("type", ""), "models": listed(f.get("models")), "groups": listed(f.get("groups")) or ["default"],
               "priority": integer(f.get("priority"), 0), "weight": integer(f.get("weight"), 1)}
    for secret in ("api_key", "base_url"):  # write-only: blank keeps the stored value
        if f.get(secret, ""):
            changes[secret] = f.get(secret)
    try:
        await write(req, ops.update_channel, cid, **changes)
    except GatewayError as err:
        form = {k: v for k, v in f.items() if k not in ("api_key", "base_url", "csrf_token")}  # never echoed
        if err.status == 404:
            raise
        return await edit(req, form=form, error=_message(err), status=err.status)
    return redirect("/admin/console/channels?done=saved")


async def set_enabled(req: Request) -> Response:
    f = await req.form()
    on = f.get("enabled") == "true"
    await write(req, ops.update_channel, req.path_params["channel_id"], enabled=on)
    return redirect("/admin/console/channels?done=" + ("enabled" if on else "disabled"))


async def delete(req: Request) -> Response:
    await write(req, ops.delete_channel, req.path_params["channel_id"])
    return redirect("/admin/console/channels?done=deleted")


async def test(req: Request) -> Response:
    from reapi.relay.probe import probe_channel

    cid = req.path_params["channel_id"]
    ch = req.gateway.catalog.snapshot.channels.get(cid)
    if ch is None:
        raise not_found("Channel", cid)
    result = await probe_channel(req.gateway, ch)
    return await show(req, probe={"channel_id": cid, **result})


def _message(err: GatewayError) -> str:
    return f"{err.param}: {err.message}" if getattr(err, "param", None) and err.param not in err.message \
        else err.message
