"""Reading a call route's request: authenticate with the route's auth, read the body once, parse it once."""
from __future__ import annotations

from typing import Callable

import orjson

from reapi.api.validation import check_depth
from reapi.asgi import Receive, read_body
from reapi.catalog import ApiKey
from reapi.errors import bad_request
from reapi.gateway import Gateway
from reapi.proxy.admission import authenticate
from reapi.proxy.call import Call


async def read_json(call: Call, scope: dict, receive: Receive,
                    auth: Callable[[Gateway, dict], ApiKey] = authenticate) -> object:
    """Authenticate (with the route's `auth`), then read and parse the body once."""
    call.key = auth(call.gw, scope)
    raw = await read_body(scope, receive, call.gw.settings.max_body_bytes)
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("The request body is not valid JSON.", code="invalid_json") from None
    check_depth(raw, body)
    return body
