"""The Deliverer: POSTs due webhook deliveries, retries them on the schedule, logs every attempt.

Started by the task worker (any number, in any number of processes, share one store). Each pass
claims up to `batch` due rows (a compare-and-set of lease_until, so two deliverers never try the
same row at once; a deliverer that dies leaves its rows to the others when the lease runs out)
and tries them, at most `concurrency` at a time. An attempt:
- checks the URL again (check_target) and connects only to addresses PublicResolver accepts;
- POSTs the stored body with content-type application/json, webhook-id, webhook-timestamp (the
  attempt's unix seconds) and webhook-signature (signed with the account's secrets, read once
  per pass);
- follows no redirect, takes at most timeout_s in all (REAPI_WEBHOOK_TIMEOUT_S), reads at most 4 KiB
  of the answer and discards it (it is never stored or logged: only the status is);
- a 2xx answer delivers; anything else (another status, a timeout, a refused connection) is
  retried per reapi.webhooks.schedule, and a refused target fails the delivery at once.
Every attempt is a webhook_attempts row: time, status code, duration, error class, one of
ERROR_CLASSES; a pass writes all of its attempts in one transaction (if the process dies before,
those deliveries are tried again when their lease runs out: delivery is at least once).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reapi.aio import stop_tasks, wait_event
from reapi.billing.ledger import now_ms
from reapi.store.probe import Probe
from reapi.webhooks.schedule import GIVE_UP_AFTER_S, RETRY_DELAYS_S, next_attempt_ms
from reapi.webhooks.secret import signing_secrets
from reapi.webhooks.signing import signature_header
from reapi.webhooks.target import PrivateAddress, PublicResolver, TargetRefused, check_target

log = logging.getLogger("reapi.webhooks")

READ_LIMIT = 4096
USER_AGENT = "reapi-webhooks/1"
# http_status: the receiver answered, not 2xx; timeout: no complete answer in time; connect_error:
# no connection (refused, DNS failure, TLS); protocol_error: a broken answer; target_refused: the URL
# or its addresses are not allowed (final); internal_error: on our side (the attempt is retried).
ERROR_CLASSES = ("http_status", "timeout", "connect_error", "protocol_error", "target_refused", "internal_error")

_DUE = text("SELECT id, account_id, task_id, url, payload, attempts, created_at FROM webhook_deliveries "
            "WHERE status = 'pending' AND next_at <= :now AND (lease_until IS NULL OR lease_until < :now) "
            "ORDER BY next_at LIMIT :n")
_ANY_DUE = ("SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND next_at <= ? "
            "AND (lease_until IS NULL OR lease_until < ?) LIMIT 1")
_CLAIM = text("UPDATE webhook_deliveries SET lease_until = :until WHERE id = :id AND status = 'pending' "
              "AND attempts = :attempts AND (lease_until IS NULL OR lease_until < :now)")
_ATTEMPT = text("INSERT INTO webhook_attempts (delivery_id, n, at, status_code, duration_ms, error) "
                "VALUES (:id, :n, :at, :code, :ms, :error)")
_DONE = text("UPDATE webhook_deliveries SET attempts = :n, status = :status, next_at = :next, lease_until = NULL, "
             "finished_at = :finished WHERE id = :id AND attempts = :prev")


class Deliverer:
    def __init__(self, engine: AsyncEngine, *, allow_private: bool, timeout_s: float = 10,
                 delays_s: tuple[float, ...] = RETRY_DELAYS_S, give_up_after_s: float = GIVE_UP_AFTER_S,
                 poll_s: float = 1.0, batch: int = 50, concurrency: int = 16,
                 resolver: AbstractResolver | None = None) -> None:
        self.engine = engine
        self.allow_private = allow_private
        self.timeout_s = timeout_s
        self.delays_s = delays_s
        self.give_up_after_s = give_up_after_s
        self.poll_s = poll_s
        self.batch = batch
        self.concurrency = concurrency
        self.lease_ms = int((timeout_s + 30) * 1000)
        self.resolver = resolver  # the names' resolver under PublicResolver (default: the system's)
        self.session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._due: Probe | None = None  # SQLite: nothing due, no transaction (reapi.store.probe)

    @classmethod
    def from_settings(cls, engine: AsyncEngine, settings: Any, **kw: Any) -> "Deliverer":
        return cls(engine, allow_private=bool(settings.webhook_allow_private),
                   timeout_s=settings.webhook_timeout_s, **kw)

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            connector = aiohttp.TCPConnector(resolver=PublicResolver(self.allow_private, self.resolver), limit=self.concurrency,
                                             ttl_dns_cache=None, use_dns_cache=False)
            self.session = aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar(),
                                                 auto_decompress=False, skip_auto_headers=("User-Agent",))
        return self.session

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._forever())

    def notify(self) -> None:
        """Look for due deliveries now (e.g. right after a terminal transition enqueued one)."""
        self._wake.set()

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_tasks(task)
        if self._due is not None:
            self._due.close()
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def _forever(self) -> None:
        failures = 0
        while True:
            try:
                n = await self.run_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("webhook pass failed")
                n = 0
                await asyncio.sleep(min(30.0, self.poll_s * 2 ** min(failures, 5)))
            if n == 0:
                await wait_event(self._wake, self.poll_s)
                self._wake.clear()

    async def run_once(self) -> int:
        """One pass: claim the due deliveries and make one attempt at each; how many attempts."""
        now = now_ms()
        if self._due is None:
            self._due = Probe(self.engine, _ANY_DUE)
        if self._due.idle((now, now)):
            return 0
        async with self.engine.begin() as conn:
            due = (await conn.execute(_DUE, {"now": now, "n": self.batch})).mappings().all()
            claimed = []
            for r in due:
                res = await conn.execute(_CLAIM, {"id": r["id"], "attempts": r["attempts"], "now": now,
                                                  "until": now + self.lease_ms})
                if res.rowcount == 1:
                    claimed.append(dict(r))
        if not claimed:
            return 0
        async with self.engine.begin() as conn:  # each account's signing secrets, once per pass
            keys = {a: await signing_secrets(conn, a, now) for a in sorted({r["account_id"] for r in claimed})}
        gate = asyncio.Semaphore(self.concurrency)

        async def one(row: dict) -> dict:
            async with gate:
                return await self._attempt(row, keys[row["account_id"]])

        results = await asyncio.gather(*(one(r) for r in claimed))
        async with self.engine.begin() as conn:  # every attempt of the pass, recorded in one transaction
            await conn.execute(_ATTEMPT, [r["attempt"] for r in results])
            await conn.execute(_DONE, [r["done"] for r in results])
        for r in results:
            a, d = r["attempt"], r["done"]
            log.info("webhook %s task %s attempt %d: %s in %d ms -> %s", a["id"], r["task_id"], a["n"],
                     a["code"] if a["code"] is not None else a["error"], a["ms"], d["status"])
        return len(claimed)

    async def _post(self, row: dict, at_ms: int, keys: list[str]) -> tuple[int | None, str | None]:
        """(status code, error class) of one POST."""
        try:
            check_target(row["url"], self.allow_private)
        except TargetRefused:
            return None, "target_refused"
        body = row["payload"].encode()
        ts = at_ms // 1000
        headers = {"content-type": "application/json", "user-agent": USER_AGENT, "webhook-id": row["id"],
                   "webhook-timestamp": str(ts), "webhook-signature": signature_header(keys, row["id"], ts, body)}
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with self._session().post(row["url"], data=body, headers=headers, allow_redirects=False,
                                            timeout=timeout) as resp:
                await resp.content.read(READ_LIMIT)  # a little of the answer, never kept
                return resp.status, None if 200 <= resp.status < 300 else "http_status"
        except asyncio.TimeoutError:
            return None, "timeout"
        except aiohttp.ClientConnectorError as e:
            return None, "target_refused" if isinstance(e.os_error, PrivateAddress) else "connect_error"
        except (aiohttp.ClientResponseError, aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            return None, "protocol_error"
        except (aiohttp.ClientError, OSError, ValueError):
            return None, "connect_error"

    async def _attempt(self, row: dict, keys: list[str]) -> dict:
        """One attempt at a claimed delivery: the rows that record it (written by run_once)."""
        n = row["attempts"] + 1
        at = now_ms()
        t0 = time.perf_counter()
        try:
            code, error = await self._post(row, at, keys)
        except Exception:  # our side (e.g. a bad secret row): the attempt is recorded and retried
            log.exception("webhook %s attempt %d failed on our side", row["id"], n)
            code, error = None, "internal_error"
        ms = int((time.perf_counter() - t0) * 1000)
        done = now_ms()
        if error is None:
            status, next_at, finished = "delivered", done, done
        else:
            retry = None if error == "target_refused" else next_attempt_ms(
                n, done, row["created_at"], self.delays_s, self.give_up_after_s)
            status, next_at, finished = ("pending", retry, None) if retry is not None else ("failed", done, done)
        return {"task_id": row["task_id"],
                "attempt": {"id": row["id"], "n": n, "at": at, "code": code, "ms": ms, "error": error},
                "done": {"id": row["id"], "n": n, "prev": n - 1, "status": status, "next": next_at,
                         "finished": finished}}
        return status
