"""The OpenAI Agents SDK (Python) end to end, offline: an agent with a function tool, in the SDK's default
Responses mode, runs through reapi against the demo upstream.

openai-agents pins websockets<17 while reapi's lock has 17.4, so the SDK lives in its own venv, made and
filled from the package index the first time (in the cache folder the Codex test uses) and then reused;
the agent runs in a subprocess of that venv (tests/api/clients/agents_run.py) with tracing disabled (it
exports traces to OpenAI by default) and every proxy variable pointing at a closed loopback port.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from reapi.billing.money import format_usd
from tests.api.test_responses_codex import CACHE

AGENTS_VERSION = "0.24.0"
SCRIPT = Path(__file__).with_name("clients") / "agents_run.py"


def agents_python() -> Path:
    root = CACHE / f"openai-agents-{AGENTS_VERSION}"
    python = root / "bin" / "python"
    if not (root / ".installed").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"openai-agents=={AGENTS_VERSION}"], check=True, timeout=600)
        (root / ".installed").write_text(AGENTS_VERSION)
    return python


async def test_agents_sdk_runs_an_agent_with_a_function_tool(gateway, upstream):
    python = await asyncio.to_thread(agents_python)
    s = await gateway.setup(upstream)
    dead = "http://127.0.0.1:9"
    env = {"PATH": os.environ.get("PATH", ""), "REAPI_BASE_URL": gateway.url + "/v1", "REAPI_TEST_KEY": s["key"],
           "OPENAI_AGENTS_DISABLE_TRACING": "1", "OPENAI_API_KEY": "unused", "HTTPS_PROXY": dead,
           "HTTP_PROXY": dead, "ALL_PROXY": dead, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    proc = await asyncio.create_subprocess_exec(str(python), str(SCRIPT), env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result == {"final": "Tool result received: the quick brown", "calls": ["Tokyo"], "api": True}
    posts = [r for r in await upstream.requests() if r["path"] == "/v1/responses"]
    assert len(posts) == 2
    second = posts[1]["body"]
    assert [i.get("type") for i in second["input"]][-2:] == ["function_call", "function_call_output"]
    recs = await gateway.usage(s["account_id"])
    assert [r["status"] for r in recs] == ["ok", "ok"]
    for r in recs:
        assert r["cost_usd"] == format_usd(r["prompt_tokens"] * 5_000 + r["completion_tokens"] * 30_000)
    assert await gateway.verify() == []
