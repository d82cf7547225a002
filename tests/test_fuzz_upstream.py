"""The hostile-upstream fuzz suite (issue #10, "Beyond the defects").

One real gateway (SQLite) in front of one hostile upstream per test function; for
every generated answer (tests/fuzz_upstream_answers.py: malformed usage, error
bodies, SSE framing, redirects, dropped connections, slow answers; secrets
echoed everywhere) the test swaps `up.handler`, makes one real call and checks
the invariants, each on its own assert line so hypothesis reports each broken
invariant with its own minimal example:

- wellformed: a valid JSON envelope, or a well-formed SSE stream ending in [DONE] /
  message_stop or an error event; status in the expected set; never 500;
- no_leak: no form of the channel key/URL/host in the client's body and headers,
  the usage records, the captured `reapi`/`uvicorn` logs; no key form in
  /admin/channels (which lists the base_url by design);
- no_credit: the balance never grows over a call, no ledger `charge` is positive,
  an error answer costs nothing, a success's x-reapi-cost-usd is its usage cost;
- settled: no usage row stays pending after the call;
- verify: tests.harness.Gateway.verify() == [];
- no_redirect: the server a 3xx points to receives nothing.

Clients are plain aiohttp (the bytes themselves are under test, headers included).
Set REAPI_FUZZ_LOG=path to append every failing example (plan + problems) as JSON lines
(REAPI_FUZZ_SURVEY=1 as well: record only, no assert, no shrinking; REAPI_FUZZ_EXAMPLES=n: examples per test).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal

import aiohttp
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings

from tests.fuzz_upstream_answers import Plan, an_plans, explicit, oa_plans
from tests.harness import Gateway, gateway_settings
from tests.hostile import HOSTILE_KEY, Hostile, secret_forms, start_hostile

OPENAI_MODEL = "gpt-5.5"
CLAUDE_MODEL = "claude-sonnet-4-6"
CLAUDE_PRICE = {"input_usd_per_mtok": "3.00", "output_usd_per_mtok": "15.00", "cached_input_usd_per_mtok": "0.30",
                "cache_write_usd_per_mtok": "3.75", "context_window": 200_000, "max_output_tokens": 64_000}
READ_TIMEOUT_S = 1  # the explicit stall example waits past it; generated pauses stay far below
MAX_EXAMPLES = int(os.environ.get("REAPI_FUZZ_EXAMPLES", "40"))
# Diagnostics only (never in CI): REAPI_FUZZ_SURVEY=1 records failures to REAPI_FUZZ_LOG instead of asserting,
# so one run lists every failing example; the explicit examples then run as the first generated ones do.
SURVEY = os.environ.get("REAPI_FUZZ_SURVEY") == "1"
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
                phases=[Phase.explicit, Phase.generate] if SURVEY else list(Phase),
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large, HealthCheck.filter_too_much])
ECHO = settings(FUZZ, max_examples=max(1, MAX_EXAMPLES // 2))
LOGGERS = ("reapi", "uvicorn")
INTERNAL_MESSAGE = "The gateway hit an internal error"  # reapi.errors.INTERNAL_ERROR
INVARIANTS = ("wellformed", "no_leak", "no_credit", "settled", "verify", "no_redirect")


async def _no_plan(request):
    from aiohttp import web
    return web.Response(status=500, text="no plan")


@dataclass
class Env:
    gw: Gateway
    up: Hostile
    sink: Hostile
    account_id: int
    key: str
    channels: dict[str, int]
    caplog: pytest.LogCaptureFixture
    stuck: set[str] = field(default_factory=set)
    seen: set[int] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return self.up.url + "/v1"


@pytest.fixture
async def env(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="reapi")
    up = await start_hostile(_no_plan)
    sink = await start_hostile(_no_plan)
    gw = await Gateway(gateway_settings(f"sqlite:///{tmp_path}/fuzz.db", upstream_read_timeout=READ_TIMEOUT_S,
                                        channel_failures=1000)).start()
    try:
        s = await gw.setup(up, model=OPENAI_MODEL, balance="1000.00",
                           channel={"base_url": up.url + "/v1", "api_key": HOSTILE_KEY})
        await gw.admin("PUT", f"/admin/models/{CLAUDE_MODEL}", CLAUDE_PRICE, expect=200)
        claude = await gw.admin("POST", "/admin/channels", {
            "name": "claude", "type": "anthropic", "base_url": up.url + "/v1", "api_key": HOSTILE_KEY,
            "models": [CLAUDE_MODEL]}, expect=201)
        yield Env(gw, up, sink, s["account_id"], s["key"], {"openai": s["channel_id"], "anthropic": claude["id"]},
                  caplog)
    finally:
        await gw.stop()
        await up.close()
        await sink.close()


# ---------------------------------------------------------------- the client's call

async def call(env: Env, route: str, stream: bool, plan: Plan) -> tuple[int, dict, bytes, str]:
    """One real call; returns status, headers (lower-case names), body, and '' or why no answer came."""
    if route == "messages":
        path, body = "/v1/messages", {"model": CLAUDE_MODEL, "max_tokens": 32, "stream": stream,
                                      "messages": [{"role": "user", "content": "Hello"}]}
        headers = {"x-api-key": env.key, "anthropic-version": "2023-06-01"}
    else:
        model = OPENAI_MODEL if route == "openai" else CLAUDE_MODEL
        path, body = "/v1/chat/completions", {"model": model, "max_completion_tokens": 32, "stream": stream,
                                              "messages": [{"role": "user", "content": "Hello"}]}
        if stream and plan.client_usage:
            body["stream_options"] = {"include_usage": True}
        headers = {"Authorization": f"Bearer {env.key}"}
    try:
        async with env.gw.http.post(env.gw.url + path, json=body, headers=headers,
                                    timeout=aiohttp.ClientTimeout(total=15)) as r:
            raw = await r.read()
            return r.status, {k.lower(): v for k, v in r.headers.items()}, raw, ""
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return 0, {}, b"", f"no well-formed HTTP answer: {exc!r}"


# ---------------------------------------------------------------- well-formedness

def sse_events(body: bytes) -> tuple[list[tuple[str, str]], bool]:
    """The events a spec-following SSE client dispatches (name, data), and whether bytes were left undispatched."""
    lines = re.split(r"\r\n|\r|\n", body.decode("utf-8"))
    events, data, name = [], [], ""
    for line in lines[:-1]:
        if line == "":
            if data:
                events.append((name or "message", "\n".join(data)))
            data, name = [], ""
        elif not line.startswith(":"):
            fname, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if fname == "data":
                data.append(value)
            elif fname == "event":
                name = value
    return events, bool(data) or lines[-1] != ""


def openai_error_problem(obj: object) -> str:
    if not isinstance(obj, dict) or set(obj) != {"error"} or not isinstance(obj["error"], dict):
        return f"not an OpenAI error envelope: {obj!r:.300}"
    e = obj["error"]
    if set(e) != {"message", "type", "param", "code"}:
        return f"error envelope keys {sorted(e)}"
    if not isinstance(e["message"], str) or not isinstance(e["type"], str):
        return f"error message/type not strings: {e!r:.300}"
    for k in ("param", "code"):
        if e[k] is not None and not isinstance(e[k], str):
            return f"error {k} is {type(e[k]).__name__}: {e[k]!r:.100}"
    if e["code"] == "internal_error" or e["message"].startswith(INTERNAL_MESSAGE):
        return "internal_error"
    return ""


def anthropic_error_problem(obj: object) -> str:
    if not isinstance(obj, dict) or obj.get("type") != "error" or not isinstance(obj.get("error"), dict):
        return f"not an Anthropic error: {obj!r:.300}"
    e = obj["error"]
    if set(e) != {"type", "message"} or not all(isinstance(v, str) for v in e.values()):
        return f"Anthropic error fields: {e!r:.300}"
    if e["message"].startswith(INTERNAL_MESSAGE):
        return "internal_error"
    return ""


MAPPED = {400, 413, 429, 502, 503}  # what an Anthropic error type maps to (reapi.relay.anthropic._ERRORS)


def expected_statuses(route: str, plan: Plan) -> set[int]:
    s = plan.status
    if plan.redirect or 300 <= s < 400 or s in (401, 403):
        return {502}  # a redirect is a bad answer; the upstream rejecting the gateway's own key is not the client's 401
    if route != "openai" and s >= 300:
        return MAPPED  # the Anthropic adapter maps by the body's error type, which may disagree with the status
    if s == 429:
        return {429}
    if s >= 500:
        return {502, 503}
    if s >= 400:
        return {s, 502}  # passed through with its status
    return {200, 504} | MAPPED  # a 2xx may still carry an error, be malformed, stall or drop


def wellformed(route: str, stream: bool, plan: Plan, status: int, headers: dict, body: bytes) -> tuple[list[str], bool]:
    """Problems with what the client got, and whether it was a success (so billable)."""
    p: list[str] = []
    if status == 500:
        p.append("HTTP 500")
    if status not in expected_statuses(route, plan):
        p.append(f"status {status} not in {sorted(expected_statuses(route, plan))} for upstream {plan.status}")
    if "x-request-id" not in headers:
        p.append("no x-request-id")
    public = CLAUDE_MODEL if route != "openai" else OPENAI_MODEL
    err_problem = anthropic_error_problem if route == "messages" else openai_error_problem
    if not (stream and status == 200):
        if not headers.get("content-type", "").startswith("application/json"):
            p.append(f"content-type {headers.get('content-type')!r}")
        try:
            obj = json.loads(body)
        except ValueError:
            return p + [f"body is not JSON: {body[:200]!r}"], False
        if status != 200:
            if why := err_problem(obj):
                p.append(why)
            return p, False
        if route == "messages":
            ok = isinstance(obj, dict) and obj.get("type") == "message" and isinstance(obj.get("content"), list)
        else:
            ok = (isinstance(obj, dict) and obj.get("object") == "chat.completion"
                  and isinstance(obj.get("choices"), list))
        if not ok:
            p.append(f"200 body is not a completion: {obj!r:.300}")
        elif obj.get("model") != public:
            p.append(f"model {obj.get('model')!r:.80} is not the public name")
        return p, True
    if not headers.get("content-type", "").startswith("text/event-stream"):
        p.append(f"stream content-type {headers.get('content-type')!r}")
    try:
        events, tail = sse_events(body)
    except UnicodeDecodeError:
        return p + ["stream is not UTF-8"], False
    if tail:
        p.append(f"stream ends inside an event: {body[-120:]!r}")
    if not events:
        return p + ["empty stream"], False
    datas = []
    for n, (name, data) in enumerate(events):
        last = n == len(events) - 1
        if data == "[DONE]" and route != "messages":
            if not last:
                p.append("data after [DONE]")
            continue
        try:
            obj = json.loads(data)
        except ValueError:
            p.append(f"event {n} data is not JSON: {data[:120]!r}")
            continue
        datas.append(obj)
        is_error = isinstance(obj, dict) and ("error" in obj if route != "messages" else obj.get("type") == "error")
        if is_error:
            if not last:
                p.append(f"error event {n} is not the last")
            if why := err_problem(obj):
                p.append(f"stream error event: {why}")
            if route == "messages" and name != "error":
                p.append(f"error event named {name!r}")
            continue
        if route == "messages":
            if not isinstance(obj, dict) or obj.get("type") != name:
                p.append(f"event {name!r} carries {str(obj)[:100]!r}")
            elif name == "message_start" and (obj.get("message") or {}).get("model") != public:
                p.append(f"message_start model {(obj.get('message') or {}).get('model')!r:.80}")
            elif name == "message_stop" and not last:
                p.append("events after message_stop")
        elif not isinstance(obj, dict):  # chunks are relayed as bytes: their shape is the upstream's
            p.append(f"event {n} is not a JSON object: {str(obj)[:100]!r}")
        elif "model" in obj and obj["model"] != public:
            p.append(f"chunk model {obj['model']!r:.80} is not the public name")
    name, data = events[-1]
    success = (data == "[DONE]") if route != "messages" else (name == "message_stop")
    last_error = datas and isinstance(datas[-1], dict) and (
        "error" in datas[-1] if route != "messages" else datas[-1].get("type") == "error")
    if not success and not last_error:
        p.append(f"stream ends with neither [DONE]/message_stop nor an error: {data[:120]!r}")
    return p, success


# ---------------------------------------------------------------- the other invariants

def leaks(where: str, text: str, forms: list[str]) -> list[str]:
    low = text.lower()
    return [f"{where} contains {f!r}" for f in forms if f.lower() in low]


async def settled_rows(env: Env) -> list[dict]:
    """The account's usage rows once none is pending (waits up to 2 s)."""
    for _ in range(40):
        rows = (await env.gw.admin("GET", f"/admin/accounts/{env.account_id}/usage?limit=1000"))["data"]
        if not any(r["status"] == "pending" and r["request_id"] not in env.stuck for r in rows):
            break
        await asyncio.sleep(0.05)
    return rows


async def top_up(env: Env) -> Decimal:
    """Keep the account able to pay (huge reported usage drains it legitimately); returns the balance."""
    balance = Decimal(await env.gw.balance(env.account_id))
    if balance < 500:
        await env.gw.admin("POST", f"/admin/accounts/{env.account_id}/credits", {"amount_usd": "1000.00"},
                           expect=201)
        balance = Decimal(await env.gw.balance(env.account_id))
    return balance


def record(route: str, stream: bool, plan: Plan, problems: dict[str, list[str]]) -> None:
    path = os.environ.get("REAPI_FUZZ_LOG")
    if path and any(problems.values()):
        with open(path, "a") as f:
            plan_d = {**asdict(plan), "body": plan.body.decode()}
            test = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[-1].split(" ")[0]
            f.write(json.dumps({"test": test, "route": route, "stream": stream, "plan": plan_d,
                                "problems": {k: v for k, v in problems.items() if v}}) + "\n")


async def check(env: Env, route: str, stream: bool, plan: Plan, output_echo: bool = False) -> None:
    gw, up = env.gw, env.up
    forms = up.secret_forms()
    # What the model itself says is relayed as bytes; only the key (in any case) and host[:port] are
    # taken out of it (README "Security"), so those are the forms looked for in such a client body.
    body_forms = [HOSTILE_KEY, up.url.split("://", 1)[1]] if output_echo else forms
    key_forms = secret_forms(HOSTILE_KEY, "")
    up.handler = plan.handler(forms, env.base_url, env.sink.url)
    env.sink.requests.clear()
    before = await top_up(env)
    mark = len(env.caplog.records)
    status, headers, body, failure = await call(env, route, stream, plan)
    p: dict[str, list[str]] = {k: [] for k in INVARIANTS}

    success = False
    if failure:
        p["wellformed"].append(failure)
    else:
        try:
            problems, success = wellformed(route, stream, plan, status, headers, body)
        except Exception as exc:  # the checker must not mask the other invariants
            problems = [f"checker failed on {body[:200]!r}: {exc!r}"]
        p["wellformed"] += problems

    p["no_redirect"] += [f"redirect target got {r['method']} {r['path']}" for r in env.sink.requests]

    rows = await settled_rows(env)
    stuck = {r["request_id"] for r in rows if r["status"] == "pending"} - env.stuck
    env.stuck |= stuck  # each stuck hold is reported once, by the call that left it
    p["settled"] += [f"usage {rid} still pending" for rid in sorted(stuck)]
    rid = headers.get("x-request-id")
    mine = [r for r in rows if r["request_id"] == rid]

    after = Decimal(await gw.balance(env.account_id))
    if after > before:
        p["no_credit"].append(f"balance grew {before} -> {after}")
    ledger = (await gw.admin("GET", f"/admin/accounts/{env.account_id}/ledger?limit=1000"))["data"]
    credits = {e["id"] for e in ledger if e["kind"] == "charge" and Decimal(e["amount_usd"]) > 0} - env.seen
    env.seen |= credits  # each crediting charge is reported once, by the call that wrote it
    p["no_credit"] += [f"charge of +{e['amount_usd']} ({e['request_id']})" for e in ledger if e["id"] in credits]
    for r in mine:
        if not success and Decimal(r["cost_usd"]) != 0 and r["status"] != "client_closed":
            p["no_credit"].append(f"an error answer cost {r['cost_usd']} (status {r['status']})")
        if success and r["status"] != "ok":
            p["no_credit"].append(f"a success recorded as {r['status']}")
        if success and not stream and "x-reapi-cost-usd" in headers and \
                Decimal(headers["x-reapi-cost-usd"]) != Decimal(r["cost_usd"]):
            p["no_credit"].append(f"x-reapi-cost-usd {headers['x-reapi-cost-usd']} != usage {r['cost_usd']}")
        if Decimal(r["cost_usd"]) < 0:
            p["no_credit"].append(f"negative cost {r['cost_usd']}")

    p["no_leak"] += leaks("client body", body.decode("utf-8", "replace"), body_forms)
    p["no_leak"] += leaks("client headers", json.dumps(headers), forms)
    p["no_leak"] += leaks("usage records", json.dumps(mine), forms)
    channels = await gw.admin("GET", "/admin/channels")
    p["no_leak"] += leaks("/admin/channels", json.dumps(channels), key_forms)
    for cid in env.channels.values():
        p["no_leak"] += leaks(f"/admin/channels/{cid}", json.dumps(await gw.admin("GET", f"/admin/channels/{cid}")),
                              key_forms)
    logs = "\n".join(env.caplog.handler.format(rec) for rec in env.caplog.records[mark:]
                     if rec.name.split(".")[0] in LOGGERS)
    p["no_leak"] += leaks("logs", logs, forms)

    p["verify"] += await gw.verify()
    record(route, stream, plan, p)
    if SURVEY:
        return
    assert not p["wellformed"], p["wellformed"]
    assert not p["no_leak"], p["no_leak"]
    assert not p["no_credit"], p["no_credit"]
    assert not p["settled"], p["settled"]
    assert not p["verify"], p["verify"]
    assert not p["no_redirect"], p["no_redirect"]


def examples(fmt: str, stream: bool):
    def deco(fn):
        for plan in reversed(explicit(fmt, stream)):
            fn = example(plan=plan)(fn)
        return fn
    return deco


# ---------------------------------------------------------------- the routes

@FUZZ
@given(plan=oa_plans(stream=False))
@examples("openai", False)
async def test_openai_chat(env, plan):
    await check(env, "openai", False, plan)


@FUZZ
@given(plan=oa_plans(stream=True))
@examples("openai", True)
async def test_openai_chat_stream(env, plan):
    await check(env, "openai", True, plan)


@FUZZ
@given(plan=an_plans(stream=False))
@examples("anthropic", False)
async def test_claude_chat(env, plan):
    await check(env, "claude", False, plan)


@FUZZ
@given(plan=an_plans(stream=True))
@examples("anthropic", True)
async def test_claude_chat_stream(env, plan):
    await check(env, "claude", True, plan)


@FUZZ
@given(plan=an_plans(stream=False))
@examples("anthropic", False)
async def test_claude_messages(env, plan):
    await check(env, "messages", False, plan)


@FUZZ
@given(plan=an_plans(stream=True))
@examples("anthropic", True)
async def test_claude_messages_stream(env, plan):
    await check(env, "messages", True, plan)


# ---------------------------------------------------------------- the model's own output
# The suites above echo secrets in every string the gateway has to read or map (errors, model, usage, headers,
# non-JSON bodies). These two echo them in the model's output as well (content, ids, system_fingerprint), which
# reapi relays as bytes after taking the channel's key (any case) and host[:port] out of them: the client body
# is checked for those forms only (masked or URL-encoded keys in model output are the model's own words).

@ECHO
@given(plan=oa_plans(stream=True, echo=True))
async def test_openai_stream_output_echo(env, plan):
    await check(env, "openai", True, plan, output_echo=True)


@ECHO
@given(plan=an_plans(stream=False, echo=True))
async def test_claude_messages_output_echo(env, plan):
    await check(env, "messages", False, plan, output_echo=True)
