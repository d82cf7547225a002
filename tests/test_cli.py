"""The `reapi` command against a real SQLite store: every operator command's happy path, and each
kind of bad input ending with a clear message and a non-zero exit, never a traceback.

In-process through click's CliRunner (the commands run asyncio.run themselves, so these tests are
synchronous); `reapi demo` runs as a real process in front of its own demo upstream."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

import openai
import orjson
import pytest
from click.testing import CliRunner

from reapi.cli import main
from tests.harness import free_port


@pytest.fixture
def cli(tmp_path):
    env = {"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db"}
    runner = CliRunner(env=env)

    def run(*args: str, code: int = 0):
        result = runner.invoke(main, list(args), catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise AssertionError(f"reapi {' '.join(args)} raised {result.exception!r}") from result.exception
        assert "Traceback" not in result.output, result.output
        assert result.exit_code == code, (args, result.exit_code, result.output)
        return result

    run("migrate")
    run.env = env
    return run


def books(cli) -> None:
    assert "ledger ok" in cli("ledger", "verify").stdout


def test_every_operator_command(cli):
    out = cli("channels", "add", "--name", "up", "--type", "anthropic", "--base-url", "https://h.example/v1/",
              "--api-key", "sk-upstream-secret", "--model", "claude-x", "--model", "claude-y", "--group", "vip",
              "--map", "claude-x=claude-x-2025", "--priority", "2", "--weight", "3").stdout
    assert out.strip() == "channel 1 created"
    listed = cli("channels", "list").stdout
    [ch] = orjson.loads(listed)
    assert "h.example" not in listed and ch["models"] == ["claude-x", "claude-y"]  # the URL is write-only
    assert ch["groups"] == ["vip"] and ch["model_map"] == {"claude-x": "claude-x-2025"}
    assert (ch["priority"], ch["weight"], ch["enabled"]) == (2, 3, True)
    assert "sk-upstream-secret" not in listed  # the upstream key never comes back

    assert cli("models", "set", "claude-x", "--input", "3", "--output", "15", "--cached-input", "0.30",
               "--cache-write", "3.75", "--context-window", "200000", "--max-output", "64000",
               "--long-context", "100000:2:1.5").stdout.strip() == "price for claude-x set"

    out = cli("accounts", "create", "acme", "--credit", "25.00").stdout
    assert out.strip() == "account 1 created, balance chat 25.00 USD, tasks 0.00 USD"
    assert cli("accounts", "create", "bare").stdout.startswith("account 2 created, balance chat 0.00 USD")
    assert cli("accounts", "credit", "1", "0.000000001", "--note", "tiny").stdout.strip() == \
        "balance 25.000000001 USD (chat)"
    assert cli("accounts", "show", "1").stdout.strip() == \
        "account 1 'acme': chat 25.000000001 USD, tasks 0.00 USD"

    out = cli("keys", "create", "1", "--name", "laptop", "--group", "vip", "--model", "claude-x",
              "--spend-limit", "5.00")
    kid, secret = re.fullmatch(r"key (\d+): (sk-\S+)\n", out.stdout).groups()
    assert "shown once" in out.stderr and len(secret) > 40
    assert cli("keys", "revoke", kid).stdout.strip() == f"key {kid} revoked"
    assert cli("keys", "revoke", kid).stdout.strip() == f"key {kid} was already revoked"
    books(cli)


def test_the_price_set_by_the_cli_is_the_one_the_admin_api_would_store(cli, tmp_path):
    import asyncio

    from reapi import operations as ops
    from reapi.store import queries
    from reapi.store.db import create_engine

    out = cli("models", "set", "m", "--input", "1.25", "--output", "10", "--long-context", "272000:2:1.5",
              "--alias", "m2", "--alias", "m-latest")
    assert out.stdout.strip() == "price for m set (aliases: m-latest, m2)"
    out = cli("models", "set", "n", "--input", "1", "--output", "2", "--alias", "m2", code=1)
    assert "already an alias of model 'm'" in out.stderr

    async def stored():
        engine = create_engine(cli.env["REAPI_DATABASE_URL"])
        async with engine.connect() as conn:
            rows = await queries.list_models(conn)
        await engine.dispose()
        return rows

    [row] = asyncio.run(stored())
    assert ops.price_view(row) == {
        "model": "m", "input_usd_per_mtok": "1.25", "output_usd_per_mtok": "10.00",
        "cached_input_usd_per_mtok": None, "cache_write_usd_per_mtok": None, "context_window": 128000,
        "max_output_tokens": 16384,
        "long_context": {"threshold_tokens": 272000, "input_multiplier": "2.0", "output_multiplier": "1.5"},
        "aliases": ["m-latest", "m2"]}
    assert (row["input_micro"], row["lc_input_milli"], row["lc_output_milli"]) == (1_250_000, 2000, 1500)


@pytest.mark.parametrize("spec", ["272000", "272000:2", "272000:2:1.5:9", "many:2:1.5", "-5:2:1.5", ":2:1.5",
                                  "272000:x:1.5", "272000:2:0.5", "272000:2:1.5555", "9999999999:2:1.5"])
def test_a_malformed_long_context_is_a_usage_error(cli, spec):
    out = cli("models", "set", "m", "--input", "1", "--output", "2", "--long-context", spec, code=2)
    assert "Invalid value for '--long-context'" in out.stderr or "Invalid value for --long-context" in out.stderr, \
        out.stderr


@pytest.mark.parametrize("amount", ["abc", "1.2.3", "-1", "0", "0.0000000001", "nan", "inf", "1e400", ""])
def test_bad_amounts_are_usage_errors_naming_the_option(cli, amount):
    out = cli("accounts", "create", "acme", "--credit", amount, code=2)
    assert "--credit" in out.stderr and "amount_usd" in out.stderr, out.stderr
    assert "account" not in out.stdout  # nothing created
    cli("accounts", "create", "ok")
    out = cli("accounts", "credit", "1", "--", amount, code=2)
    assert "AMOUNT" in out.stderr, out.stderr
    out = cli("keys", "create", "1", "--spend-limit", amount, code=2)
    assert "--spend-limit" in out.stderr, out.stderr
    assert cli("accounts", "show", "1").stdout.strip() == "account 1 'ok': chat 0.00 USD, tasks 0.00 USD"
    books(cli)


@pytest.mark.parametrize("rate", ["abc", "-1", "1.2.3", "0.0000001", "2000000"])
def test_bad_rates_are_usage_errors(cli, rate):
    out = cli("models", "set", "m", "--input", rate, "--output", "2", code=2)
    assert "--input" in out.stderr, out.stderr
    out = cli("models", "set", "m", "--input", "1", "--output", "2", "--cached-input", rate, code=2)
    assert "--cached-input" in out.stderr, out.stderr


def test_unknown_ids_are_errors_not_tracebacks(cli):
    for args in (["accounts", "credit", "7", "1.00"], ["accounts", "show", "7"], ["keys", "create", "7"],
                 ["keys", "revoke", "7"]):
        out = cli(*args, code=1)
        assert re.search(r"Error: (Account|Key) 7 not found\.", out.stderr), out.stderr
    for args in (["accounts", "credit", "x", "1"], ["keys", "revoke", "1.5"]):
        assert "Invalid value" in cli(*args, code=2).stderr


def test_bad_names_urls_and_keys_are_usage_errors(cli):
    base = ["channels", "add", "--name", "c", "--base-url", "http://h/v1", "--api-key", "k", "--model", "m"]
    for flag, bad in (("--base-url", "http://user:pw@h/v1"), ("--api-key", "k\r\nX: y"), ("--name", "n" * 201)):
        args = list(base)
        args[args.index(flag) + 1] = bad
        assert flag in cli(*args, code=2).stderr
    assert "--map" in cli(*base, "--map", "nomapping", code=2).stderr
    assert "--weight" in cli(*base, "--weight", "-1", code=2).stderr
    assert "MODEL" in cli("models", "set", "a\nb", "--input", "1", "--output", "1", code=2).stderr
    assert "--context-window" in cli("models", "set", "m", "--input", "1", "--output", "1",
                                     "--context-window", "0", code=2).stderr
    assert "--workspace" in cli("keys", "create", "1", "--workspace", "nope", code=2).stderr
    assert "--wallet" in cli("accounts", "credit", "1", "1", "--wallet", "nope", code=2).stderr
    assert orjson.loads(cli("channels", "list").stdout) == []


def test_an_unmigrated_store_is_an_error_without_its_text(tmp_path):
    runner = CliRunner(env={"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/empty.db"})
    out = runner.invoke(main, ["accounts", "create", "acme", "--credit", "1"])
    assert out.exit_code == 1 and isinstance(out.exception, SystemExit), out.output
    assert "reapi migrate" in out.stderr and "INSERT" not in out.stderr, out.stderr


def test_tasks_workspace_and_wallet(cli):
    """Wallets (helper G3): a tasks key starts rk_live_, top-ups land in the wallet named."""
    cli("accounts", "create", "acme", "--credit", "2.00", "--wallet", "tasks")
    cli("accounts", "credit", "1", "12.50")
    assert cli("accounts", "show", "1").stdout.strip() == "account 1 'acme': chat 12.50 USD, tasks 2.00 USD"
    out = cli("keys", "create", "1", "--workspace", "tasks").stdout
    assert re.fullmatch(r"key \d+: rk_live_\S{40,}\n", out), out
    assert re.fullmatch(r"key \d+: sk-\S{40,}\n", cli("keys", "create", "1").stdout)
    books(cli)


def test_demo_serves_a_chat_call_with_the_key_it_prints(tmp_path):
    port = free_port()
    env = {**os.environ, "REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/demo.db", "REAPI_LOG_LEVEL": "warning"}
    for _ in range(2):  # the second run finds the demo channels and points them at the new upstream
        proc = subprocess.Popen([sys.executable, "-m", "reapi", "demo", "--port", str(port)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            key = None
            for line in proc.stdout:
                if "API key:" in line:
                    key = line.split()[-1]
                    break
            assert key and key.startswith("sk-"), proc.stderr.read() if proc.poll() is not None else key
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                        assert r.status == 200
                        break
                except OSError:
                    assert time.monotonic() < deadline and proc.poll() is None, "demo did not start"
                    time.sleep(0.1)
            client = openai.OpenAI(api_key=key, base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
            r = client.chat.completions.create(model="gpt-5.5", messages=[{"role": "user", "content": "hi"}])
            assert r.choices[0].message.content and r.usage.completion_tokens > 0
            pricing = orjson.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/pricing", timeout=5).read())
            assert {m["model"] for m in pricing["data"]} == {"gpt-5.5", "gpt-5.4", "claude-opus-4-8",
                                                             "claude-sonnet-4-6"}
            # the demo upstream is the demo's child, and ends with it (PR_SET_PDEATHSIG)
            children = [int(p) for p in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]
            assert children
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{c}") and "Z" not in _state(c) for c in children):
            assert time.monotonic() < deadline, "the demo upstream outlived reapi demo"
            time.sleep(0.1)
    runner = CliRunner(env={"REAPI_DATABASE_URL": env["REAPI_DATABASE_URL"]})
    listed = orjson.loads(runner.invoke(main, ["channels", "list"]).stdout)
    assert sorted(c["name"] for c in listed) == ["demo-anthropic", "demo-ark", "demo-images", "demo-openai",
                                                 "demo-reapi-tasks"]  # not created twice
    assert "ledger ok" in runner.invoke(main, ["ledger", "verify"]).stdout


def _state(pid: int) -> str:
    """The process state letter from /proc (Z: a zombie, already ended); "" once it is gone."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""
