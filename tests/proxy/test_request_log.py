"""One request log line (logger "reapi.requests") per finished /v1 request: success, refusal, upstream failure.

Real gateway, real sockets. The line names the response's x-request-id, the key id, the model, the status
(and code), the tokens, the cost charged (equal to x-reapi-cost-usd) and the duration; never the client's
key, the upstream's key or URL, nor the prompt."""
from __future__ import annotations

import logging
import re

import orjson

from tests.hostile import HOSTILE_KEY, json_answer, start_hostile

PROMPT = "the secret prompt text 7f3a"
LINE = re.compile(r"^(?P<id>req_\w+) key=(?P<key>\S+) model=(?P<model>\S+) status=(?P<status>\d+) code=(?P<code>\S+) "
                  r"channel=(?P<channel>\S+) prompt=(?P<prompt>\d+) completion=(?P<completion>\d+) "
                  r"cached=(?P<cached>\d+) cost=(?P<cost>[0-9.]+) ms=(?P<ms>\d+)$")


def request_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reapi.requests" and r.levelno >= logging.INFO]


def only_line(caplog, request_id: str, *secrets: str) -> dict:
    lines = [ln for ln in request_lines(caplog) if request_id in ln]
    assert len(lines) == 1, request_lines(caplog)
    for s in (PROMPT, *secrets):
        assert s not in lines[0], lines[0]
    m = LINE.match(lines[0])
    assert m, lines[0]
    return m.groupdict()


async def post(gateway, path: str, key: str, body: dict) -> tuple[int, dict, bytes]:
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    return await gateway.raw("POST", path, data=orjson.dumps(body), headers=headers)


async def test_success_logs_one_line_with_usage_and_cost(gateway, upstream, caplog):
    caplog.set_level(logging.INFO, logger="reapi.requests")
    s = await gateway.setup(upstream)
    for stream in (False, True):
        caplog.clear()
        body = {"model": "gpt-5.5", "messages": [{"role": "user", "content": PROMPT}], "stream": stream}
        status, headers, raw = await post(gateway, "/v1/chat/completions", s["key"], body)
        assert status == 200, raw
        f = only_line(caplog, headers["x-request-id"], s["key"], upstream.url)
        assert f["id"] == headers["x-request-id"]
        assert (f["key"], f["model"], f["status"], f["code"]) == (str(s["key_id"]), "'gpt-5.5'", "200", "-")
        assert f["channel"] == str(s["channel_id"])
        assert int(f["prompt"]) > 0 and int(f["completion"]) > 0
        usage = (await gateway.usage(s["account_id"]))[0]
        assert (int(f["prompt"]), int(f["completion"])) == (usage["prompt_tokens"], usage["completion_tokens"])
        assert f["cost"] == usage["cost_usd"]
        if not stream:
            assert f["cost"] == headers["x-reapi-cost-usd"]


async def test_refusals_log_one_line_with_status_and_code(gateway, upstream, caplog):
    caplog.set_level(logging.INFO, logger="reapi.requests")
    s = await gateway.setup(upstream)
    cases = [("sk-not-a-key", {"model": "gpt-5.5", "messages": [{"role": "user", "content": PROMPT}]},
              "401", "invalid_api_key", "-"),
             (s["key"], {"model": "nope", "messages": [{"role": "user", "content": PROMPT}]},
              "404", "model_not_found", str(s["key_id"]))]
    for key, body, status, code, key_id in cases:
        caplog.clear()
        got, headers, raw = await post(gateway, "/v1/chat/completions", key, body)
        assert str(got) == status, raw
        f = only_line(caplog, headers["x-request-id"], key)
        assert (f["status"], f["code"], f["key"], f["cost"]) == (status, code, key_id, "0.00")
    caplog.clear()  # /v1/messages: a refusal before admission (wrong method) is logged too
    got, headers, _ = await gateway.raw("GET", "/v1/messages", headers={"x-api-key": s["key"]})
    assert got == 405
    assert only_line(caplog, headers["x-request-id"], s["key"])["code"] == "method_not_allowed"


async def test_upstream_failure_logs_one_line_without_upstream_secrets(gateway, caplog):
    caplog.set_level(logging.INFO, logger="reapi.requests")
    up = await start_hostile(lambda req: json_answer({"error": {"message": "boom", "type": "server_error"}},
                                                     status=500))
    try:
        s = await gateway.setup(up, channel={"base_url": up.url + "/v1", "api_key": HOSTILE_KEY})
        for path, body in (("/v1/chat/completions", {"model": "gpt-5.5", "stream": True,
                                                     "messages": [{"role": "user", "content": PROMPT}]}),
                           ("/v1/chat/completions", {"model": "gpt-5.5",
                                                     "messages": [{"role": "user", "content": PROMPT}]})):
            caplog.clear()
            status, headers, raw = await post(gateway, path, s["key"], body)
            assert status == 502, raw
            f = only_line(caplog, headers["x-request-id"], s["key"], HOSTILE_KEY, up.url, up.url.split("://")[1])
            assert (f["status"], f["cost"], f["prompt"]) == ("502", "0.00", "0")
            assert f["code"] == orjson.loads(raw)["error"]["code"]
    finally:
        await up.close()
