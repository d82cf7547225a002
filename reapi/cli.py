"""The `reapi` command: run the gateway, the demo upstream, and operate the store."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from typing import Any

import click
import orjson

from reapi.settings import Settings


def _settings() -> Settings:
    return Settings.from_env()


def _run(coro) -> Any:
    return asyncio.run(coro)


async def _with_conn(fn, *args, write: bool = True):
    from reapi.store.db import create_engine

    engine = create_engine(_settings().database_url)
    try:
        async with (engine.begin() if write else engine.connect()) as conn:
            return await fn(conn, *args)
    finally:
        await engine.dispose()


def _valid(model: str, **values: Any) -> None:
    """Check values with the admin API's own body model (reapi.api.admin), so the CLI refuses
    what the API refuses: a bad one ends the command with a usage error naming the field."""
    from pydantic import ValidationError

    from reapi.api import admin

    try:
        getattr(admin, model)(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err.get("loc", ()))
        raise click.BadParameter(f"{field}: {err.get('msg')}") from None


def _echo_json(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


@click.group()
def main() -> None:
    """reapi: an OpenAI-compatible LLM gateway with exact prepaid billing."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Processes sharing the port.")
def serve(host: str, port: int, workers: int) -> None:
    """Run the gateway (migrates the store first)."""
    import uvicorn

    from reapi.store.db import migrate as run_migrations

    settings = _settings()
    run_migrations(settings.database_url)
    uvicorn.run("reapi.app:create_app", factory=True, host=host, port=port, workers=workers, loop="uvloop",
                http="reapi.app:LimitedHttpProtocol", access_log=False, log_level=settings.log_level, lifespan="on")


@main.command()
def migrate() -> None:
    """Bring the store's schema up to date."""
    from reapi.store.db import migrate as run_migrations

    run_migrations(_settings().database_url)
    click.echo("store is at the newest schema")


@main.command("mock-upstream")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9000, show_default=True, type=int)
@click.option("--api-key", default=None, help="Require this key from callers.")
@click.option("--latency-ms", default=0, show_default=True, type=int)
@click.option("--chunk-delay-ms", default=0, show_default=True, type=int)
@click.option("--words", default=12, show_default=True, type=int, help="Default reply length in tokens.")
def mock_upstream(host: str, port: int, api_key: str | None, latency_ms: int, chunk_delay_ms: int, words: int) -> None:
    """Run the offline demo upstream (OpenAI and Anthropic formats)."""
    from reapi.mock_upstream import MockConfig, run

    run(host, port, MockConfig(api_key=api_key, latency_ms=latency_ms, chunk_delay_ms=chunk_delay_ms, words=words))


# --- operator commands ----------------------------------------------------------------

@main.group()
def channels() -> None:
    """Upstream channels."""


@channels.command("add")
@click.option("--name", required=True)
@click.option("--type", "type_", type=click.Choice(["openai", "anthropic"]), default="openai", show_default=True)
@click.option("--base-url", required=True)
@click.option("--api-key", required=True)
@click.option("--model", "models", multiple=True, required=True, help="Public model name (repeat).")
@click.option("--group", "groups", multiple=True, help="Group (repeat); default: default.")
@click.option("--map", "maps", multiple=True, help="public=upstream model name mapping (repeat).")
@click.option("--priority", default=0, type=int)
@click.option("--weight", default=1, type=int)
def channels_add(name, type_, base_url, api_key, models, groups, maps, priority, weight) -> None:
    from reapi.store import queries

    if any("=" not in m for m in maps):
        raise click.BadParameter("--map takes public=upstream")
    model_map = dict(m.split("=", 1) for m in maps)
    v = {"name": name, "type": type_, "base_url": base_url, "api_key": api_key, "models": list(models),
         "groups": list(groups) or ["default"], "model_map": model_map, "priority": priority, "weight": weight,
         "enabled": True}
    _valid("ChannelIn", **v)
    cid = _run(_with_conn(queries.create_channel, v))
    click.echo(f"channel {cid} created")


@channels.command("list")
def channels_list() -> None:
    from reapi.store import queries

    _echo_json(_run(_with_conn(queries.list_channels, write=False)))


@main.group()
def models() -> None:
    """The rate card."""


@models.command("set")
@click.argument("model")
@click.option("--input", "input_", required=True, help="USD per 1M input tokens, e.g. 1.25")
@click.option("--output", required=True, help="USD per 1M output tokens")
@click.option("--cached-input", default=None, help="USD per 1M cache-read input tokens")
@click.option("--cache-write", default=None, help="USD per 1M cache-write input tokens")
@click.option("--context-window", default=128000, type=int, show_default=True)
@click.option("--max-output", default=16384, type=int, show_default=True)
@click.option("--long-context", default=None, help="THRESHOLD:INPUT_MULT:OUTPUT_MULT, e.g. 272000:2:1.5")
def models_set(model, input_, output, cached_input, cache_write, context_window, max_output, long_context) -> None:
    from reapi.billing.money import parse_multiplier, parse_rate
    from reapi.store import queries

    v = {"input_micro": parse_rate(input_), "output_micro": parse_rate(output),
         "cached_input_micro": parse_rate(cached_input) if cached_input else None,
         "cache_write_micro": parse_rate(cache_write) if cache_write else None,
         "context_window": context_window, "max_output_tokens": max_output,
         "lc_threshold_tokens": None, "lc_input_milli": None, "lc_output_milli": None}
    if long_context:
        t, i, o = long_context.split(":")
        v.update(lc_threshold_tokens=int(t), lc_input_milli=parse_multiplier(i), lc_output_milli=parse_multiplier(o))
    _run(_with_conn(queries.put_model, model, v))
    click.echo(f"price for {model} set")


@main.group()
def accounts() -> None:
    """Customer accounts."""


@accounts.command("create")
@click.argument("name")
@click.option("--credit", "amount", default=None, help="Initial top-up in USD, e.g. 10.00")
def accounts_create(name: str, amount: str | None) -> None:
    from reapi.billing.ledger import Credit
    from reapi.billing.ledger import run as ledger_run
    from reapi.billing.money import format_usd, parse_usd
    from reapi.store import queries

    _valid("AccountIn", name=name)

    async def go(conn):
        acc = await queries.create_account(conn, name)
        balance = 0
        if amount:
            balance = await ledger_run(conn, Credit(acc["id"], parse_usd(amount), "initial credit"))
        return acc["id"], balance

    aid, balance = _run(_with_conn(go))
    click.echo(f"account {aid} created, balance {format_usd(balance)} USD")


@accounts.command("credit")
@click.argument("account_id", type=int)
@click.argument("amount")
@click.option("--note", default=None)
def accounts_credit(account_id: int, amount: str, note: str | None) -> None:
    from reapi.billing.ledger import Credit
    from reapi.billing.ledger import run as ledger_run
    from reapi.billing.money import format_usd, parse_usd

    nano = parse_usd(amount)
    if nano <= 0:
        raise click.BadParameter("amount must be greater than zero")
    balance = _run(_with_conn(ledger_run, Credit(account_id, nano, note)))
    if balance is None:
        raise click.ClickException(f"no account {account_id}")
    click.echo(f"balance {format_usd(balance)} USD")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.argument("account_id", type=int)
@click.option("--name", default="default")
@click.option("--group", "groups", multiple=True, help="Restrict to group (repeat).")
@click.option("--model", "models_", multiple=True, help="Restrict to model (repeat).")
@click.option("--spend-limit", default=None, help="USD cap for this key.")
def keys_create(account_id: int, name: str, groups, models_, spend_limit) -> None:
    from reapi.billing.money import parse_usd
    from reapi.store import queries

    _valid("KeyIn", name=name, groups=list(groups) or None, models=list(models_) or None)
    v = {"name": name, "groups": list(groups) or None, "models": list(models_) or None,
         "spend_limit_nano": parse_usd(spend_limit) if spend_limit else None}
    kid, secret = _run(_with_conn(queries.create_key, account_id, v))
    click.echo(f"key {kid}: {secret}")
    click.echo("(shown once: only its hash is stored)", err=True)


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    from reapi.store import queries

    if not _run(_with_conn(queries.revoke_key, key_id)):
        raise click.ClickException(f"no active key {key_id}")
    click.echo(f"key {key_id} revoked")


@main.group()
def ledger() -> None:
    """The books."""


@ledger.command("verify")
def ledger_verify() -> None:
    """Check every balance against its ledger and every usage record against its entries."""
    from reapi.billing.ledger import verify

    problems = _run(_with_conn(verify, write=False))
    for p in problems:
        click.echo(p)
    if problems:
        raise SystemExit(1)
    click.echo("ledger ok: every balance equals the sum of its entries")


# --- the one-command demo ---------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@main.command()
@click.option("--port", default=8000, show_default=True, type=int)
def demo(port: int) -> None:
    """Start the demo upstream and the gateway on SQLite, with a funded account and a key."""
    from reapi.store.db import migrate as run_migrations

    os.environ.setdefault("REAPI_DATABASE_URL", "sqlite:///reapi-demo.db")
    os.environ.setdefault("REAPI_ADMIN_KEY", "admin-" + os.urandom(8).hex())
    settings = _settings()
    run_migrations(settings.database_url)
    mock_port = _free_port()
    mock = subprocess.Popen([sys.executable, "-m", "reapi", "mock-upstream", "--port", str(mock_port),
                             "--api-key", "demo-upstream-key", "--chunk-delay-ms", "30"])
    try:
        secret = _run(_seed_demo(f"http://127.0.0.1:{mock_port}"))
        base = f"http://127.0.0.1:{port}"
        click.echo(f"""
reapi demo is starting on {base} (SQLite file: {settings.database_url})
  API key:   {secret}
  admin key: {settings.admin_key}

  curl {base}/v1/chat/completions \\
    -H "Authorization: Bearer {secret}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-5.5", "messages": [{{"role": "user", "content": "Hello"}}], "stream": true}}'
""")
        time.sleep(0.2)
        from click import Context

        with Context(serve) as ctx:
            ctx.invoke(serve, host="127.0.0.1", port=port, workers=1)
    finally:
        mock.terminate()


async def _seed_demo(mock_url: str) -> str:
    from reapi.billing.ledger import Credit
    from reapi.billing.ledger import run as ledger_run
    from reapi.store import queries

    async def go(conn):
        if not await queries.list_channels(conn):
            await queries.create_channel(conn, {
                "name": "demo-openai", "type": "openai", "base_url": mock_url + "/v1", "api_key": "demo-upstream-key",
                "models": ["gpt-5.5", "gpt-5.4"], "groups": ["default"], "model_map": {}, "priority": 0,
                "weight": 1, "enabled": True})
            await queries.create_channel(conn, {
                "name": "demo-anthropic", "type": "anthropic", "base_url": mock_url, "api_key": "demo-upstream-key",
                "models": ["claude-opus-4-8", "claude-sonnet-4-6"], "groups": ["default"], "model_map": {},
                "priority": 0, "weight": 1, "enabled": True})
        else:  # the demo upstream gets a new port each run
            for ch in await queries.list_channels(conn):
                if ch["name"].startswith("demo-"):
                    url = mock_url + "/v1" if ch["type"] == "openai" else mock_url
                    await queries.update_channel(conn, ch["id"], {"base_url": url})
        demo_prices = {
            "gpt-5.5": ("5.00", "30.00", "0.50", None, 1_000_000, 128_000, (272_000, 2000, 1500)),
            "gpt-5.4": ("2.50", "15.00", "0.25", None, 1_000_000, 128_000, (272_000, 2000, 1500)),
            "claude-opus-4-8": ("5.00", "25.00", "0.50", "6.25", 200_000, 64_000, None),
            "claude-sonnet-4-6": ("3.00", "15.00", "0.30", "3.75", 200_000, 64_000, None),
        }
        from reapi.billing.money import parse_rate

        for name, (i, o, c, w, ctx, mx, lc) in demo_prices.items():
            await queries.put_model(conn, name, {
                "input_micro": parse_rate(i), "output_micro": parse_rate(o), "cached_input_micro": parse_rate(c),
                "cache_write_micro": parse_rate(w) if w else None, "context_window": ctx, "max_output_tokens": mx,
                "lc_threshold_tokens": lc[0] if lc else None, "lc_input_milli": lc[1] if lc else None,
                "lc_output_milli": lc[2] if lc else None})
        acc = await queries.create_account(conn, "demo")
        await ledger_run(conn, Credit(acc["id"], 10 * 10**9, "demo credit"))
        _, secret = await queries.create_key(conn, acc["id"], {"name": "demo"})
        return secret

    return await _with_conn(go)
