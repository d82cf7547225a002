"""Codex CLI end to end, offline, on a Claude model: `codex exec` with reapi as its custom Responses provider
completes a turn with a tool call round trip through the Responses -> Messages translation (the same pinned
Codex and offline config as tests/api/test_responses_codex.py)."""
from __future__ import annotations

import asyncio
import os

from reapi.billing.money import format_usd
from tests.api.test_responses_claude import MODEL, sent, setup
from tests.api.test_responses_codex import codex_binary, config


async def test_codex_exec_completes_a_turn_with_a_tool_call_on_claude(gateway, upstream, tmp_path):
    binary = await asyncio.to_thread(codex_binary)
    s = await setup(gateway, upstream)
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    # Codex offers its hosted web search by default, which Claude cannot run here: the user turns it off
    toml = config(gateway.url + "/v1").replace('model = "gpt-5.5"', f'model = "{MODEL}"\nweb_search = "disabled"')
    (home / "config.toml").write_text(toml)
    dead = "http://127.0.0.1:9"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "CODEX_HOME": str(home),
           "REAPI_TEST_KEY": s["key"], "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "ALL_PROXY": dead,
           "https_proxy": dead, "http_proxy": dead, "all_proxy": dead, "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1"}
    proc = await asyncio.create_subprocess_exec(
        str(binary), "exec", "--skip-git-repo-check", "What is the weather in Tokyo? [mock words=3]",
        cwd=work, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-3000:] + out.decode()[-2000:]
    assert "Tool result received:" in out.decode()
    posts = await sent(upstream)
    assert len(posts) == 2  # the tool call, then the answer to its output
    for body in (p["body"] for p in posts):
        assert body["stream"] is True and all("input_schema" in t for t in body["tools"])
    kinds = [b["type"] for m in posts[1]["body"]["messages"] for b in m["content"]]
    assert "tool_use" in kinds and "tool_result" in kinds
    recs = await gateway.usage(s["account_id"])
    assert [r["status"] for r in recs] == ["ok", "ok"] and all(r["stream"] for r in recs)
    for r in recs:
        assert r["cost_usd"] == format_usd(r["prompt_tokens"] * 3_000 + r["completion_tokens"] * 15_000)
    assert await gateway.verify() == []
