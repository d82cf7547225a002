"""The Call: everything one admitted request carries from the hold to the settlement; request ids."""
from __future__ import annotations

import itertools
import os
import time

from reapi.billing.ledger import HoldResult
from reapi.gateway import Gateway
from reapi.limits import Rule
from reapi.relay.base import Usage

_REQUEST_PREFIX = "req_" + os.urandom(8).hex()  # per process: ids stay unique across instances
_request_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_REQUEST_PREFIX}{next(_request_counter):08x}"


class Call:
    """Everything one admitted request carries from the hold to the settlement.

    `usage` and `charged` are set by the settlement (finish_ok), `status` and `code` by whatever ends
    the call; the request log line (reapi.proxy.pipeline) reads them."""

    __slots__ = ("gw", "request_id", "key", "body", "model", "group", "price", "channel", "adapter",
                 "stream", "include_usage", "prompt_tokens", "n", "cap", "send_cap", "rules", "admitted_tokens",
                 "hold", "headers", "started", "status", "code", "closed", "streaming", "usage", "charged", "conn",
                 "ext", "stored_response")

    def __init__(self, gw: Gateway, request_id: str) -> None:
        self.gw = gw
        self.request_id = request_id
        self.headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        self.key = None
        self.model = self.group = ""
        self.channel = None
        self.hold: HoldResult | None = None
        self.rules: list[Rule] = []
        self.admitted_tokens = 0
        self.send_cap: int | None = None
        self.started = time.perf_counter()
        self.status = 200
        self.code = ""  # the error code of a call that ended in an error
        self.closed = ""  # "charged" or "released" once the hold's close was written
        self.streaming = False  # response headers were sent
        self.usage: Usage | None = None  # what the call was charged on
        self.charged = 0  # nano-USD
        self.conn = None  # the client's connection when the server offers its lost hook (reapi.app)
        self.ext = None  # a route's own state for its relay (Responses: reapi.proxy.responses.Extra)
        self.stored_response: tuple | None = None  # a row the settlement writes with the charge (Responses)
