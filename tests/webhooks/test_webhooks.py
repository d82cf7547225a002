"""Webhooks end to end on SQLite and PostgreSQL: enqueue in a transaction, a Deliverer POSTing to a
receiver the test runs (which verifies signatures with the Standard Webhooks reference library),
retries, the delivery log, refused targets, rotation."""
from __future__ import annotations

import asyncio
import socket
import time

import orjson
import pytest
from aiohttp.abc import AbstractResolver
from sqlalchemy import text

from reapi.store.db import create_engine, migrate
from reapi.webhooks import (Deliverer, TargetRefused, check_target, check_target_dns, deliveries, enqueue,
                            enqueue_async, next_attempt_ms, rotate_secret, secret, sign, secret_key)
from reapi.webhooks.schedule import GIVE_UP_AFTER_S, RETRY_DELAYS_S
from tests.webhooks.receiver import receiver

FAST = (0.05, 0.05, 0.05)  # the retry delays of these tests (the real schedule is tested on its own)
TASK = {"id": "task_01JDEMO", "model": "gpt-image-2", "status": "completed", "created_at": 1700000000,
        "output": {"image_urls": ["http://gw/media/tasks/task_01JDEMO/0.png"]}, "error": None}


@pytest.fixture
async def engine(store_url):
    await asyncio.to_thread(migrate, store_url)
    engine = create_engine(store_url)
    yield engine
    await engine.dispose()


async def put(engine, url: str, *, account_id: int = 1, task: dict = TASK) -> str:
    async with engine.begin() as conn:  # as the task's terminal transition does: a sync Connection
        return await conn.run_sync(lambda c: enqueue(c, account_id=account_id, task_id=task["id"], url=url,
                                                     payload=task, now_ms=int(time.time() * 1000)))


async def drain(d: Deliverer, engine, task_id: str, until: str = "delivered", limit_s: float = 10) -> list[dict]:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        await d.run_once()
        log = await deliveries(engine, task_id)
        if log and all(x["status"] == until for x in log):
            return log
        await asyncio.sleep(0.02)
    raise AssertionError(f"not {until} in {limit_s} s: {await deliveries(engine, task_id)}")


def test_signature_matches_the_specifications_example():
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    assert sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}') == \
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


async def test_500_then_200_two_attempts_signed_and_logged(engine):
    acct_secret = await secret(engine, 1)
    assert acct_secret.startswith("whsec_") and len(secret_key(acct_secret)) == 24
    assert await secret(engine, 1) == acct_secret  # made once, then shown as is
    d = Deliverer(engine, allow_private=True, delays_s=FAST)
    try:
        async with receiver() as rec:
            rec.secrets, rec.answers = [acct_secret], [500]
            msg_id = await put(engine, rec.url)
            log = await drain(d, engine, TASK["id"])
    finally:
        await d.stop()
    assert len(rec.got) == 2
    first, second = rec.got
    for r in rec.got:
        assert r.verified == {acct_secret: True}
        assert r.headers["webhook-id"] == msg_id and r.headers["Content-Type"] == "application/json"
        assert abs(int(r.headers["webhook-timestamp"]) - time.time()) < 30
    assert first.body == second.body
    body = orjson.loads(first.body)
    assert body["type"] == "task.completed" and body["data"] == TASK and body["timestamp"].endswith("Z")
    [delivery] = log
    assert delivery["id"] == msg_id and delivery["url"] == rec.url and delivery["next_attempt_at"] is None
    assert [(a["n"], a["status_code"], a["error"]) for a in delivery["attempts"]] == [
        (1, 500, "http_status"), (2, 200, None)]
    assert all(a["duration_ms"] >= 0 and a["at"] >= delivery["created_at"] for a in delivery["attempts"])
    assert delivery["finished_at"] >= delivery["attempts"][1]["at"]


async def test_a_rolled_back_transition_sends_nothing_and_other_accounts_logs_stay_apart(engine):
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await enqueue_async(conn, account_id=1, task_id="task_gone", url="http://127.0.0.1:9/x",
                                payload=TASK, now_ms=1)
            raise RuntimeError("the terminal transition failed")
    assert await deliveries(engine, "task_gone") == []
    await put(engine, "http://127.0.0.1:9/x", account_id=7)
    assert len(await deliveries(engine, TASK["id"], account_id=7)) == 1
    assert await deliveries(engine, TASK["id"], account_id=8) == []


async def test_gives_up_after_the_schedule_and_logs_every_attempt(engine):
    d = Deliverer(engine, allow_private=True, delays_s=FAST)
    try:
        async with receiver() as rec:
            rec.answers = [503, 500, 502, 429, 200]
            await put(engine, rec.url)
            [log] = await drain(d, engine, TASK["id"], until="failed")
    finally:
        await d.stop()
    assert [(a["status_code"], a["error"]) for a in log["attempts"]] == [
        (503, "http_status"), (500, "http_status"), (502, "http_status"), (429, "http_status")]
    assert len(rec.got) == 4


async def test_redirects_are_not_followed_timeouts_and_big_answers(engine):
    d = Deliverer(engine, allow_private=True, delays_s=FAST, timeout_s=0.5)
    try:
        async with receiver() as rec:
            rec.answers = [302]
            await put(engine, rec.url)
            [log] = await drain(d, engine, TASK["id"])
            assert [a["status_code"] for a in log["attempts"]] == [302, 200]
            assert [r.path for r in rec.got] == ["/hook", "/hook"]  # /moved never asked for
            rec.delay_s, rec.got = 2.0, []
            task = {**TASK, "id": "task_slow", "status": "failed"}
            await put(engine, rec.url, task=task)
            t0 = time.monotonic()
            await d.run_once()
            assert time.monotonic() - t0 < 1.8
            [log] = await deliveries(engine, "task_slow")
            assert [(a["status_code"], a["error"]) for a in log["attempts"]] == [(None, "timeout")]
            assert log["status"] == "pending" and orjson.loads(rec.got[0].body)["type"] == "task.failed"
            rec.delay_s, rec.big_answer = 0, True
            task = {**TASK, "id": "task_big"}
            await put(engine, rec.url, task=task)
            [log] = await drain(d, engine, "task_big")
            assert [a["status_code"] for a in log["attempts"]] == [200]
    finally:
        await d.stop()


async def test_a_closed_port_is_a_connect_error(engine):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = Deliverer(engine, allow_private=True, delays_s=FAST)
    try:
        await put(engine, f"http://127.0.0.1:{port}/hook")
        await d.run_once()
    finally:
        await d.stop()
    [log] = await deliveries(engine, TASK["id"])
    assert [(a["status_code"], a["error"]) for a in log["attempts"]] == [(None, "connect_error")]


class FixedResolver(AbstractResolver):
    """DNS as an attacker would set it: a public-looking name that resolves to loopback."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": self.names[host], "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


async def test_private_targets_are_refused_at_delivery_even_after_rebinding(engine):
    async with receiver() as rec:
        port = rec.url.split(":")[2].split("/")[0]
        d = Deliverer(engine, allow_private=False, delays_s=FAST,
                      resolver=FixedResolver({"hooks.example.com": "127.0.0.1"}))
        try:
            await put(engine, rec.url)  # a literal loopback address
            await put(engine, f"http://hooks.example.com:{port}/hook", task={**TASK, "id": "task_rebind"})
            await d.run_once()
        finally:
            await d.stop()
        assert rec.got == []
    for task_id in (TASK["id"], "task_rebind"):
        [log] = await deliveries(engine, task_id)
        assert log["status"] == "failed"
        assert [(a["status_code"], a["error"]) for a in log["attempts"]] == [(None, "target_refused")]


async def test_rotation_signs_with_both_secrets_during_the_grace(engine):
    old = await secret(engine, 1)
    new = await rotate_secret(engine, 1)
    assert new != old and await secret(engine, 1) == new
    d = Deliverer(engine, allow_private=True, delays_s=FAST)
    try:
        async with receiver() as rec:
            rec.secrets = [old, new]
            await put(engine, rec.url)
            await drain(d, engine, TASK["id"])
            assert rec.got[0].verified == {old: True, new: True}
            assert len(rec.got[0].headers["webhook-signature"].split(" ")) == 2
            async with engine.begin() as conn:  # the grace is over
                await conn.execute(text("UPDATE webhook_secrets SET previous_until = 1"))
            await put(engine, rec.url, task={**TASK, "id": "task_after"})
            await drain(d, engine, "task_after")
            assert rec.got[1].verified == {old: False, new: True}
    finally:
        await d.stop()


async def test_two_deliverers_never_send_a_delivery_twice(engine):
    a = Deliverer(engine, allow_private=True, delays_s=FAST)
    b = Deliverer(engine, allow_private=True, delays_s=FAST)
    try:
        async with receiver() as rec:
            ids = [await put(engine, rec.url, task={**TASK, "id": f"task_{i}"}) for i in range(30)]
            await asyncio.gather(a.run_once(), b.run_once(), a.run_once(), b.run_once())
            for i in range(30):
                await drain(a, engine, f"task_{i}")
    finally:
        await a.stop()
        await b.stop()
    assert sorted(r.headers["webhook-id"] for r in rec.got) == sorted(ids)


async def test_the_started_deliverer_delivers_on_its_own(engine):
    d = Deliverer(engine, allow_private=True, delays_s=FAST, poll_s=0.05)
    d.start()
    try:
        async with receiver() as rec:
            await put(engine, rec.url)
            d.notify()
            end = time.monotonic() + 10
            while not rec.got and time.monotonic() < end:
                await asyncio.sleep(0.02)
            assert len(rec.got) == 1
    finally:
        await d.stop()


# --- targets --------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "ftp://example.com/x", "file:///etc/passwd", "javascript:alert(1)", "example.com/hook", "",
    "http://user:pass@example.com/hook", "http://token@example.com/hook", "http://example.com:99999/x",
    "http://127.0.0.1/x", "http://10.1.2.3/x", "http://172.16.0.1/x", "http://192.168.1.1/x",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/x", "http://[fe80::1]/x", "http://[fc00::1]/x",
    "http://[::ffff:127.0.0.1]/x", "http://0.0.0.0/x", "http://100.64.0.1/x", "http://224.0.0.1/x",
    "http://localhost/x", "http://LOCALHOST./x", "http://api.localhost/x", "http://intranet/x",
    "http://exa mple.com/x", "http://" + "a" * 2100 + ".com/", 42, None,
])
def test_check_target_refuses(url):
    with pytest.raises(TargetRefused):
        check_target(url, allow_private=False)


@pytest.mark.parametrize("url", ["https://hooks.example.com/reapi", "http://93.184.215.14:8080/x",
                                 "https://[2606:4700::1111]/x"])
def test_check_target_accepts_public_urls(url):
    check_target(url, allow_private=False)


def test_allow_private_admits_local_targets_but_never_other_schemes_or_credentials():
    check_target("http://127.0.0.1:8080/x", allow_private=True)
    check_target("http://localhost/x", allow_private=True)
    for url in ("ftp://127.0.0.1/x", "http://u:p@127.0.0.1/x"):
        with pytest.raises(TargetRefused):
            check_target(url, allow_private=True)


async def test_check_target_dns_resolves_names():
    with pytest.raises(TargetRefused, match="does not resolve"):
        await check_target_dns("http://no-such-host.invalid/x", allow_private=False)
    await check_target_dns("http://127.0.0.1:1/x", allow_private=True)
    with pytest.raises(TargetRefused):
        await check_target_dns("http://127.0.0.1:1/x", allow_private=False)


def test_the_retry_schedule_spans_24_hours():
    t0 = 0
    now, attempts, times = t0, 1, [t0]
    while True:
        nxt = next_attempt_ms(attempts, now, t0)
        if nxt is None:
            break
        times.append(nxt)
        now, attempts = nxt, attempts + 1
    assert len(times) == 9 and times[-1] <= GIVE_UP_AFTER_S * 1000
    assert 23 * 3600_000 <= times[-1]  # retried for most of a day
    assert sum(RETRY_DELAYS_S) < GIVE_UP_AFTER_S <= sum(RETRY_DELAYS_S) * 1.1 + 1
    assert next_attempt_ms(1, 1000, 0) == 6000  # 5 s, no jitter below a minute
    assert next_attempt_ms(len(RETRY_DELAYS_S) + 1, 0, 0) is None
    assert next_attempt_ms(2, GIVE_UP_AFTER_S * 1000 - 10, 0) == GIVE_UP_AFTER_S * 1000  # moved to the deadline
    assert next_attempt_ms(2, GIVE_UP_AFTER_S * 1000, 0) is None


def test_the_allow_private_setting_is_a_real_boolean():
    from reapi.settings import Settings, SettingsError

    assert Settings.from_env({}).webhook_allow_private is False  # bool("0") would have been True
    assert Settings.from_env({"REAPI_WEBHOOK_ALLOW_PRIVATE": "0"}).webhook_allow_private is False
    assert Settings.from_env({"REAPI_WEBHOOK_ALLOW_PRIVATE": "1"}).webhook_allow_private is True
    for bad in ("yes", "true", "2"):
        with pytest.raises(SettingsError, match="REAPI_WEBHOOK_ALLOW_PRIVATE must be 0 or 1"):
            Settings.from_env({"REAPI_WEBHOOK_ALLOW_PRIVATE": bad})
    d = Deliverer.from_settings(None, Settings.from_env({"REAPI_WEBHOOK_TIMEOUT_S": "3"}))
    assert (d.allow_private, d.timeout_s) == (False, 3)


def test_a_body_too_large_or_unencodable_is_cut_to_id_and_status_never_failing_the_transition():
    from reapi.webhooks.outbox import MAX_PAYLOAD_BYTES, body_of

    big = {"id": "task_1", "status": "completed", "output": {"image_urls": ["x" * MAX_PAYLOAD_BYTES]}}
    assert orjson.loads(body_of(big, 0))["data"] == {"id": "task_1", "status": "completed", "truncated": True}
    odd = {"id": "task_2", "status": "failed", "n": 2**70, "obj": object()}
    body = orjson.loads(body_of(odd, 0))
    assert body == {"type": "task.failed", "timestamp": "1970-01-01T00:00:00.000Z",
                    "data": {"id": "task_2", "status": "failed", "truncated": True}}


async def test_a_broken_secret_row_is_an_internal_error_and_retried(engine):
    await secret(engine, 1)
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE webhook_secrets SET secret = 'whsec_not*base64'"))
    d = Deliverer(engine, allow_private=True, delays_s=FAST)
    try:
        async with receiver() as rec:
            await put(engine, rec.url)
            await d.run_once()
            assert rec.got == []
    finally:
        await d.stop()
    [log] = await deliveries(engine, TASK["id"])
    assert log["status"] == "pending" and [(a["status_code"], a["error"]) for a in log["attempts"]] == [
        (None, "internal_error")]
