"""A real Responses client end to end, offline: Codex CLI (`codex exec`, npm @openai/codex) with a custom model
provider whose base_url is reapi completes a turn, with a tool call round trip, against the demo upstream.

The test installs the pinned Codex release with npm into a cache folder on first use. Nothing leaves
loopback: Codex runs from a temporary folder outside any git repository, with
check_for_update_on_startup = false, analytics off and its app, plugin and update features off in its
config.toml, and every HTTP(S) proxy variable pointing at a closed loopback port (any request to another
host fails at once), NO_PROXY covering 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reapi.billing.money import format_usd

CODEX_VERSION = "0.171.0"
CACHE = Path(os.environ.get("REAPI_TEST_CLIENTS", Path.home() / ".cache" / "reapi-test-clients"))
FEATURES_OFF = ("apps", "plugins", "remote_plugin", "plugin_sharing", "in_app_updates",
                "skill_mcp_dependency_install", "daemon_auto_start", "system_proxy_fallback")


def codex_binary() -> Path:
    """The pinned Codex CLI, installed with npm into the cache folder the first time."""
    root = CACHE / f"codex-{CODEX_VERSION}"
    binary = root / "node_modules" / ".bin" / "codex"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("this test needs npm (Node.js) to install @openai/codex")
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--silent",
                        f"@openai/codex@{CODEX_VERSION}"], check=True, timeout=600)
    return binary


def config(base_url: str) -> str:
    features = "\n".join(f"{name} = false" for name in FEATURES_OFF)
    return f"""model = "gpt-5.5"
model_provider = "reapi"
check_for_update_on_startup = false
approval_policy = "never"
sandbox_mode = "read-only"

[model_providers.reapi]
name = "reapi"
base_url = "{base_url}"
env_key = "REAPI_TEST_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[features]
{features}
"""


async def test_codex_exec_completes_a_turn_with_a_tool_call(gateway, upstream, tmp_path):
    binary = await asyncio.to_thread(codex_binary)
    s = await gateway.setup(upstream)
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(config(gateway.url + "/v1"))
    dead = "http://127.0.0.1:9"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "CODEX_HOME": str(home),
           "REAPI_TEST_KEY": s["key"], "HTTPS_PROXY": dead, "HTTP_PROXY": dead, "ALL_PROXY": dead,
           "https_proxy": dead, "http_proxy": dead, "all_proxy": dead, "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1"}
    proc = await asyncio.create_subprocess_exec(
        str(binary), "exec", "--skip-git-repo-check", "What is the weather in Tokyo? [mock words=3]",
        cwd=work, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Tool result received: the quick brown" in out.decode()

    posts = [r for r in await upstream.requests() if r["path"] == "/v1/responses"]
    assert len(posts) == 2  # the tool call, then the answer to its output
    first, second = posts[0]["body"], posts[1]["body"]
    for body in (first, second):
        assert body["store"] is False and body["stream"] is True and "group" not in body
        assert body["include"] == ["reasoning.encrypted_content"]
    assert {t.get("type") for t in first["tools"]} >= {"function"}
    kinds = [i.get("type") for i in second["input"]]
    assert "function_call" in kinds and "function_call_output" in kinds
    assert all(r["path"].startswith("/v1/") for r in await upstream.requests())

    recs = await gateway.usage(s["account_id"])
    assert [r["status"] for r in recs] == ["ok", "ok"] and all(r["stream"] for r in recs)
    for r in recs:
        assert r["cost_usd"] == format_usd(r["prompt_tokens"] * 5_000 + r["completion_tokens"] * 30_000)
    assert await gateway.verify() == []
