"""GET /v1/models and /v1/models/{id}: what the calling key may use, in OpenAI's list shape."""
from __future__ import annotations

import orjson

from reapi.asgi import Receive, Send, send_bytes
from reapi.errors import GatewayError
from reapi.gateway import Gateway
from reapi.proxy.admission import authenticate


def _entry(name: str) -> dict:
    return {"id": name, "object": "model", "created": 0, "owned_by": "reapi"}


async def models(gw: Gateway, scope: dict, receive: Receive, send: Send, headers: list) -> None:
    key = authenticate(gw, scope)
    names = gw.catalog.snapshot.served_models(key.groups)
    if key.models is not None:
        names = [m for m in names if m in key.models]
    path = scope["path"].rstrip("/")
    if path == "/v1/models":
        body = {"object": "list", "data": [_entry(n) for n in names]}
    else:
        name = path[len("/v1/models/"):]
        if name not in names:
            raise GatewayError(404, f"The model '{name}' does not exist or is not available to this key.",
                               type="invalid_request_error", param="model", code="model_not_found")
        body = _entry(name)
    await send_bytes(send, 200, orjson.dumps(body), headers)
