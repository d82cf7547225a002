"""Forwarding: the call's one upstream POST (redirects refused, never retried), its error mapping, and the
Watch that abandons it the moment the client leaves or the call's deadline passes."""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, NoReturn

import aiohttp

from reapi import metrics
from reapi.asgi import ClientGone, Receive, Send
from reapi.catalog import Channel
from reapi.errors import GatewayError
from reapi.proxy.call import Call
from reapi.proxy.settle import finish_failed
from reapi.relay.base import UpstreamRequest

# What a route does with a 2xx upstream answer: relay it (a stream or a whole body) and settle.
Answer = Callable[[Call, aiohttp.ClientResponse, Send, "Watch"], Awaitable[None]]


def stream_ended() -> GatewayError:
    return GatewayError(502, "The upstream stream ended early. The call was not charged.",
                        type="upstream_error", code="upstream_stream_ended")


def upstream_failure(exc: BaseException) -> GatewayError:
    if isinstance(exc, asyncio.TimeoutError):
        return GatewayError(504, "The upstream provider timed out. The call was not charged.",
                            type="upstream_error", code="upstream_timeout")
    return GatewayError(502, "The upstream provider could not be reached. The call was not charged.",
                        type="upstream_error", code="upstream_unreachable")


def stream_broken(exc: BaseException) -> GatewayError:
    """The upstream's answer cut off after its headers came (the connection dropped mid-stream or
    mid-body): upstream_stream_error; a read timeout stays upstream_timeout."""
    if isinstance(exc, asyncio.TimeoutError):
        return upstream_failure(exc)
    return GatewayError(502, "The upstream provider's answer broke off before its end. The call was not charged.",
                        type="upstream_error", code="upstream_stream_error")


def too_long(call: Call, charged: bool) -> GatewayError:
    """504 for a call cut at its deadline (REAPI_MAX_REQUEST_SECONDS, the whole relay included)."""
    outcome = ("It was charged for the output delivered before the cut." if charged
               else "The call was not charged.")
    return GatewayError(504, f"The call ran longer than this gateway allows "
                             f"({call.gw.settings.max_request_seconds} s) and was ended. {outcome}",
                        type="upstream_error", code="request_too_long")


def redirected(status: int) -> GatewayError:
    return GatewayError(502, f"The upstream provider answered with a redirect (HTTP {status}), which the gateway "
                             "does not follow. The call was not charged.",
                        type="upstream_error", code="upstream_bad_response")


class Stopped(Exception):
    """A wait inside Watch.run was cut short: the client left, or the call reached its deadline."""


class Watch:
    """Ends a call's relay early, from the hold to the end of the answer.

    The connection's lost hook (or, under another ASGI server, a watcher task waiting for the client's
    http.disconnect) marks the client gone, and a timer runs to the call's deadline
    (call.started + max_request_seconds: connect, headers and every chunk included, keep-alive bytes or
    not). Either one sets its flag (`gone`, `expired`) and, while the request is inside `run()`, cancels
    it there, so that `run` raises Stopped and the upstream request is abandoned at once. Outside `run`
    (settling, writing the money, sending the last bytes) nothing is interrupted."""

    __slots__ = ("task", "gone", "expired", "armed", "fired", "conn", "watcher", "timer")

    def __init__(self, call: Call, receive: Receive) -> None:
        loop = asyncio.get_running_loop()
        self.task = asyncio.current_task()
        self.gone = self.expired = self.armed = self.fired = False
        # The server's connection-lost hook (reapi.app.LimitedHttpProtocol) costs nothing per call; any
        # other ASGI server gets a task that waits for the client's http.disconnect.
        conn = call.conn
        if conn is not None and conn.on_lost(self._lost):
            self.conn, self.watcher = conn, None
        else:
            self.conn, self.watcher = None, loop.create_task(self._watch(receive))
        left = call.gw.settings.max_request_seconds - (time.perf_counter() - call.started)
        self.timer = loop.call_later(max(0.0, left), self._expire)

    @property
    def stopped(self) -> bool:
        return self.gone or self.expired

    async def _watch(self, receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self._lost()

    def _lost(self) -> None:
        self.gone = True
        self._interrupt()

    def _expire(self) -> None:
        self.expired = True
        self._interrupt()

    def _interrupt(self) -> None:
        if self.armed and not self.fired:
            self.fired = True
            self.task.cancel()

    async def run(self, aw):
        """Await `aw` (a coroutine or aiohttp request); raise Stopped if the client leaves or the deadline
        passes first. Only the request's own task may call it."""
        if self.stopped:
            aw.close()
            raise Stopped()
        self.armed = True
        try:
            result = await aw
        except asyncio.CancelledError:
            if self.fired and self.task.uncancel() == 0:
                raise Stopped() from None
            raise  # a cancellation from outside (shutdown): not ours to absorb
        finally:
            self.armed = False
        if self.fired:  # our cancellation was swallowed inside `aw`
            self.task.uncancel()
            if hasattr(result, "close"):
                result.close()
            raise Stopped()
        return result

    def close(self) -> None:
        self.armed = False
        if self.watcher is not None:
            self.watcher.cancel()
        else:
            self.conn.off_lost(self._lost)
        self.timer.cancel()


async def stopped_early(call: Call, watch: Watch) -> NoReturn:
    """The client left, or the deadline passed, before any of the answer reached the client: the hold is
    released in full (a client gone: usage status client_closed, cost 0). Raises ClientGone (nobody to
    answer) or the 504."""
    if watch.gone:
        await finish_failed(call, "client_closed", status="client_closed")
        call.status = 499
        metrics.observe_request(call.model, call.group, 499)
        raise ClientGone()
    await finish_failed(call, "request_too_long")
    raise too_long(call, charged=False)


async def upstream_post(call: Call, watch: Watch, url: str, data: bytes, headers: dict) -> aiohttp.ClientResponse:
    """The call's one upstream POST, redirects never followed; on failure the hold is released."""
    gw = call.gw
    try:
        return await watch.run(gw.http.post(url, data=data, headers=headers, allow_redirects=False))
    except Stopped:
        await stopped_early(call, watch)
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        gw.health.record_failure(call.channel.id)
        err = upstream_failure(exc)
        await finish_failed(call, err.code or "upstream_error")
        raise err from None


async def upstream_error(call: Call, resp: aiohttp.ClientResponse, watch: Watch,
                         map_error: Callable[[int, bytes, Channel], GatewayError]) -> NoReturn:
    """A non-2xx upstream answer: the hold released, the error mapped (scrubbed by the adapter's
    `map_error`) and raised. A 3xx is a bad response: redirects are not followed."""
    status = resp.status
    if status < 400:
        err = redirected(status)
    else:
        try:
            raw = await watch.run(resp.read())
        except Stopped:
            await stopped_early(call, watch)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raw = b""
        err = map_error(status, raw, call.channel)
    if status < 400 or status >= 500 or status in (401, 403, 429):
        call.gw.health.record_failure(call.channel.id)
    await finish_failed(call, err.code or "upstream_error")
    raise err


async def forward(call: Call, send: Send, receive: Receive, req: UpstreamRequest, answer: Answer) -> None:
    """Exactly one upstream POST (no retry here, ever: the SDKs retry 5xx safely, as failures cost nothing),
    then `answer` relays the 2xx reply; a non-2xx one is released and mapped by the adapter's map_error.
    Every path settles or releases the hold."""
    watch = Watch(call, receive)
    try:
        resp = await upstream_post(call, watch, req.url, req.body, req.headers)
        try:
            if resp.status >= 300:
                await upstream_error(call, resp, watch, call.adapter.map_error)
            await answer(call, resp, send, watch)
        finally:
            resp.close() if watch.stopped else resp.release()
    finally:
        watch.close()
