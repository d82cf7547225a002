"""The OpenAI Agents SDK (Python) end to end, offline, on a Claude model: its default Responses mode through
reapi's Responses -> Messages translation against the demo upstream's Anthropic endpoint (the same venv and
runner script as tests/api/test_responses_agents.py; tracing off, proxies pointing at a closed port)."""
from __future__ import annotations

import asyncio
import json
import os

from reapi.billing.money import format_usd
from tests.api.test_responses_agents import SCRIPT, agents_python
from tests.api.test_responses_claude import MODEL, sent, setup


async def test_agents_sdk_runs_an_agent_with_a_function_tool_on_claude(gateway, upstream):
    python = await asyncio.to_thread(agents_python)
    s = await setup(gateway, upstream)
    dead = "http://127.0.0.1:9"
    env = {"PATH": os.environ.get("PATH", ""), "REAPI_BASE_URL": gateway.url + "/v1", "REAPI_TEST_KEY": s["key"],
           "REAPI_TEST_MODEL": MODEL, "OPENAI_AGENTS_DISABLE_TRACING": "1", "OPENAI_API_KEY": "unused",
           "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "ALL_PROXY": dead, "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1"}
    proc = await asyncio.create_subprocess_exec(str(python), str(SCRIPT), env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["calls"] == ["Tokyo"] and result["api"] is True
    assert result["final"].startswith("Tool result received:")
    posts = await sent(upstream)
    assert len(posts) == 2
    second = posts[1]["body"]["messages"]
    assert [b["type"] for b in second[-2]["content"]] == ["tool_use"]
    assert [b["type"] for b in second[-1]["content"]] == ["tool_result"]
    recs = await gateway.usage(s["account_id"])
    assert [r["status"] for r in recs] == ["ok", "ok"]
    for r in recs:  # Claude Sonnet: $3 input, $15 output per 1M tokens (no cache here)
        assert r["cost_usd"] == format_usd(r["prompt_tokens"] * 3_000 + r["completion_tokens"] * 15_000)
    assert await gateway.verify() == []
