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


async def _with_conn(fn, *args, write: bool = True, **kw):
    from reapi.store.db import create_engine

    engine = create_engine(_settings().database_url)
    try:
        async with (engine.begin() if write else engine.connect()) as conn:
            return await fn(conn, *args, **kw)
    finally:
        await engine.dispose()


def _op(fn, *args, hints: dict[str, str] | None = None, write: bool = True, **kw) -> Any:
    """Run one operation (reapi.operations) in its own transaction. Its refusals end the command
    cleanly: a bad value (400) as a usage error naming the option (`hints`: field -> option),
    exit 2; a missing account/key/channel (404) as an error, exit 1; never a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from reapi.errors import GatewayError

    try:
        return _run(_with_conn(fn, *args, write=write, **kw))
    except GatewayError as err:
        if err.status == 400:
            hint = (hints or {}).get(err.param or "") or (hints or {}).get((err.param or "").split(".")[0])
            raise click.BadParameter(err.message, param_hint=hint) from None
        raise click.ClickException(err.message) from None
    except SQLAlchemyError as exc:  # never its text: it carries the statement's parameters
        raise click.ClickException(f"the store refused the operation ({type(exc).__name__}); "
                                   "is it migrated (`reapi migrate`)?") from None


def _echo_json(obj: Any) -> None:
    click.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


@click.group()
def main() -> None:
    """reapi: an OpenAI-compatible LLM gateway with exact prepaid billing."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Processes sharing the port.")
@click.option("--backlog", default=4096, show_default=True, type=click.IntRange(1, 65535),
              help="Connections the kernel queues before they are accepted (capped by net.core.somaxconn).")
def serve(host: str, port: int, workers: int, backlog: int) -> None:
    """Run the gateway (migrates the store first)."""
    import uvicorn

    settings = _settings()
    # `reapi migrate` in a child process: alembic (~12 MB) never enters the serving process.
    if subprocess.run([sys.executable, "-m", "reapi", "migrate"], stdout=subprocess.DEVNULL).returncode:
        raise click.ClickException("the store could not be migrated (the error is above)")
    uvicorn.run("reapi.app:create_app", factory=True, host=host, port=port, workers=workers, backlog=backlog,
                loop="uvloop", http="reapi.app:LimitedHttpProtocol", access_log=False, log_level=settings.log_level,
                lifespan="on")


@main.command()
def worker() -> None:
    """Run the task worker alone (no HTTP): claims, submits and polls tasks until stopped."""
    import signal

    from reapi.app import setup_logging
    from reapi.store.db import migrate as run_migrations

    settings = _settings()
    setup_logging(settings.log_level)
    run_migrations(settings.database_url)

    async def go() -> None:
        from reapi.gateway import Gateway
        from reapi.tasks.worker import Worker

        gw = Gateway(settings)
        await gw.start()
        w = gw.task_worker = Worker(gw)
        w.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        click.echo(f"task worker {gw.instance_id} running", err=True)
        try:
            await stop.wait()
        finally:
            await w.stop()
            await gw.stop()

    _run(go())


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


# --- operator commands: each one call of reapi.operations ------------------------------

WALLET = click.Choice(["chat", "tasks"])


@main.group()
def channels() -> None:
    """Upstream channels."""


@channels.command("add")
@click.option("--name", required=True)
@click.option("--type", "type_", type=click.Choice(["openai", "anthropic", "ark", "openai-images", "reapi-tasks"]), default="openai", show_default=True)
@click.option("--base-url", required=True)
@click.option("--api-key", required=True)
@click.option("--model", "models", multiple=True, required=True, help="Public model name (repeat).")
@click.option("--group", "groups", multiple=True, help="Group (repeat); default: default.")
@click.option("--map", "maps", multiple=True, help="public=upstream model name mapping (repeat).")
@click.option("--priority", default=0, type=int)
@click.option("--weight", default=1, type=int)
def channels_add(name, type_, base_url, api_key, models, groups, maps, priority, weight) -> None:
    """Add an upstream channel."""
    from reapi import operations as ops

    if any("=" not in m for m in maps):
        raise click.BadParameter("--map takes public=upstream", param_hint="--map")
    cid = _op(ops.create_channel, name=name, type=type_, base_url=base_url, api_key=api_key, models=models,
              groups=groups or ("default",), model_map=dict(m.split("=", 1) for m in maps), priority=priority,
              weight=weight, hints={"name": "--name", "base_url": "--base-url", "api_key": "--api-key",
                                    "models": "--model", "groups": "--group", "model_map": "--map",
                                    "priority": "--priority", "weight": "--weight"})
    click.echo(f"channel {cid} created")


@channels.command("list")
def channels_list() -> None:
    """The channels (without their upstream keys)."""
    from reapi.store import queries

    _echo_json(_op(queries.list_channels, write=False))


@main.group()
def models() -> None:
    """The rate card."""


def _long_context(value: str | None) -> dict | None:
    """THRESHOLD:INPUT_MULT:OUTPUT_MULT -> the price's long_context."""
    if value is None:
        return None
    parts = value.split(":")
    if len(parts) != 3 or not parts[0].strip().isdigit():
        raise click.BadParameter(f"takes THRESHOLD:INPUT_MULT:OUTPUT_MULT such as 272000:2:1.5, not {value!r}",
                                 param_hint="--long-context")
    return {"threshold_tokens": int(parts[0]), "input_multiplier": parts[1], "output_multiplier": parts[2]}


@models.command("set")
@click.argument("model")
@click.option("--input", "input_", required=True, help="USD per 1M input tokens, e.g. 1.25")
@click.option("--output", required=True, help="USD per 1M output tokens")
@click.option("--cached-input", default=None, help="USD per 1M cache-read input tokens")
@click.option("--cache-write", default=None, help="USD per 1M cache-write input tokens")
@click.option("--context-window", default=128000, type=int, show_default=True)
@click.option("--max-output", default=16384, type=int, show_default=True)
@click.option("--long-context", default=None, help="THRESHOLD:INPUT_MULT:OUTPUT_MULT, e.g. 272000:2:1.5")
@click.option("--alias", "aliases", multiple=True,
              help="Another name the model answers to and bills as (repeat); the set replaces the old one.")
@click.option("--description", default=None, help="The public catalog's text for the model (kept when omitted).")
@click.option("--category", default=None, type=click.Choice(["chat", "image", "video", "audio", "tools"]),
              help="The public catalog's section (kept when omitted; a new model: chat).")
@click.option("--tag", "tags", multiple=True, help="A public catalog label (repeat; replaces the old ones).")
@click.option("--hidden/--shown", "hidden", default=None, help="Leave the model out of the public catalog, or not.")
def models_set(model, input_, output, cached_input, cache_write, context_window, max_output, long_context,
               aliases, description, category, tags, hidden) -> None:
    """Set a model's price (and its aliases and public catalog entry)."""
    from reapi import operations as ops

    _op(ops.set_price, model, input_usd_per_mtok=input_, output_usd_per_mtok=output,
        cached_input_usd_per_mtok=cached_input, cache_write_usd_per_mtok=cache_write,
        context_window=context_window, max_output_tokens=max_output, long_context=_long_context(long_context),
        aliases=list(aliases), description=description, category=category, tags=list(tags) if tags else None,
        hidden=hidden,
        hints={"model": "MODEL", "input_usd_per_mtok": "--input", "output_usd_per_mtok": "--output",
               "cached_input_usd_per_mtok": "--cached-input", "cache_write_usd_per_mtok": "--cache-write",
               "context_window": "--context-window", "max_output_tokens": "--max-output",
               "long_context": "--long-context", "aliases": "--alias", "description": "--description",
               "tags": "--tag"})
    click.echo(f"price for {model} set" + (f" (aliases: {', '.join(sorted(set(aliases)))})" if aliases else ""))


@main.group("task-models")
def task_models() -> None:
    """The task gateway's models: price lists (SKUs) and accepted parameters."""


@task_models.command("set")
@click.argument("model")
@click.option("--spec", "spec", required=True,
              help='The model as JSON (inline, or @FILE): {"category", "unit", "quantity", "skus", "params", ...}')
def task_models_set(model: str, spec: str) -> None:
    """Create or replace a task model (the body of PUT /admin/task-models/{model})."""
    from reapi.operations.task_models import set_task_model

    try:
        raw = open(spec[1:], "rb").read() if spec.startswith("@") else spec.encode()
        values = orjson.loads(raw)
    except (OSError, orjson.JSONDecodeError) as exc:
        raise click.BadParameter(f"not a JSON object ({type(exc).__name__})", param_hint="--spec") from None
    if not isinstance(values, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--spec")
    _op(set_task_model, model, **values, hints={"model": "MODEL"} | {k: "--spec" for k in (
        "category", "endpoint", "unit", "quantity", "skus", "params", "max_seconds", "description", "tags",
        "hidden")})
    click.echo(f"task model {model} set")


@task_models.command("list")
def task_models_list() -> None:
    """The task models and their price lists."""
    from reapi.operations.task_models import task_model_view
    from reapi.store import queries

    _echo_json([task_model_view(r) for r in _op(queries.list_task_models, write=False)])


@main.group()
def accounts() -> None:
    """Customer accounts."""


def _balances(acc: dict) -> str:
    from reapi.billing.money import format_usd

    return ", ".join(f"{w} {format_usd(n)} USD" for w, n in acc["balances"].items())


@accounts.command("create")
@click.argument("name")
@click.option("--credit", "amount", default=None, help="Initial top-up in USD, e.g. 10.00")
@click.option("--wallet", type=WALLET, default="chat", show_default=True, help="The wallet --credit goes to.")
def accounts_create(name: str, amount: str | None, wallet: str) -> None:
    """Create an account, optionally with a first top-up."""
    from reapi import operations as ops

    acc = _op(ops.create_account, name, credit_usd=amount, wallet=wallet,
              hints={"name": "NAME", "amount_usd": "--credit"})
    click.echo(f"account {acc['id']} created, balance {_balances(acc)}")


@accounts.command("credit")
@click.argument("account_id", type=int)
@click.argument("amount")
@click.option("--wallet", type=WALLET, default="chat", show_default=True)
@click.option("--note", default=None)
def accounts_credit(account_id: int, amount: str, wallet: str, note: str | None) -> None:
    """Top up one wallet of an account by AMOUNT USD."""
    from reapi import operations as ops
    from reapi.billing.money import format_usd

    c = _op(ops.add_credit, account_id, amount, wallet=wallet, note=note,
            hints={"amount_usd": "AMOUNT", "note": "--note"})
    click.echo(f"balance {format_usd(c['balance_nano'])} USD ({wallet})")


@accounts.command("show")
@click.argument("account_id", type=int)
def accounts_show(account_id: int) -> None:
    """An account and its balances."""
    from reapi import operations as ops

    acc = _op(ops.account, account_id, write=False)
    click.echo(f"account {acc['id']} {acc['name']!r}: {_balances(acc)}")


@main.group()
def keys() -> None:
    """API keys."""


@keys.command("create")
@click.argument("account_id", type=int)
@click.option("--name", default="default")
@click.option("--workspace", type=WALLET, default="chat", show_default=True,
              help="chat: an sk- key for /v1; tasks: an rk_live_ key for the task gateway.")
@click.option("--group", "groups", multiple=True, help="Restrict to group (repeat).")
@click.option("--model", "models_", multiple=True, help="Restrict to model (repeat).")
@click.option("--spend-limit", default=None, help="USD cap for this key.")
@click.option("--expires", default=None, help="The key stops working then: 2027-01-01 or an ISO date-time (UTC).")
@click.option("--webhook-url", default=None,
              help="tasks keys: the webhook of every task submitted without a webhook_url of its own.")
def keys_create(account_id: int, name: str, workspace: str, groups, models_, spend_limit, expires,
                webhook_url) -> None:
    """Create a key (printed once: only its hash is stored)."""
    from reapi import operations as ops

    k = _op(ops.create_key, account_id, name=name, workspace=workspace, groups=groups or None,
            models=models_ or None, spend_limit_usd=spend_limit, expires_at=expires, webhook_url=webhook_url,
            allow_private_webhooks=_settings().webhook_allow_private,
            hints={"name": "--name", "groups": "--group", "models": "--model", "spend_limit_usd": "--spend-limit",
                   "expires_at": "--expires", "webhook_url": "--webhook-url"})
    click.echo(f"key {k['id']}: {k['key']}")
    click.echo("(shown once: only its hash is stored)", err=True)


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke a key (at once on this instance, within REAPI_CONFIG_POLL_MS on the others)."""
    from reapi import operations as ops

    if _op(ops.revoke_key, key_id):
        click.echo(f"key {key_id} revoked")
    else:
        click.echo(f"key {key_id} was already revoked")


@main.group()
def codes() -> None:
    """Redemption codes (each credits one wallet once, ever)."""


@codes.command("create")
@click.option("--amount", required=True, help="Face value of each code in USD, e.g. 10.00")
@click.option("--count", default=1, show_default=True, type=int, help="How many codes (at most 1000).")
@click.option("--wallet", type=WALLET, default="chat", show_default=True, help="The wallet a code credits.")
@click.option("--expires", default=None, help="Last valid moment: a date (2027-01-01, its start, UTC) or ISO time.")
@click.option("--note", default=None, help="Free text kept with the batch.")
def codes_create(amount: str, count: int, wallet: str, expires: str | None, note: str | None) -> None:
    """Mint a batch of codes; they are printed once (only their hashes are stored)."""
    from reapi.operations import codes as code_ops

    b = _op(code_ops.create_codes, amount, count, wallet=wallet, expires_at=expires, note=note,
            hints={"amount_usd": "--amount", "count": "--count", "expires_at": "--expires", "note": "--note"})
    for code in b["codes"]:
        click.echo(code)
    click.echo(f"batch {b['batch']}: {b['count']} codes of {b['amount_usd']} USD ({b['wallet']} wallet); "
               "shown once: only their hashes are stored", err=True)


@codes.command("list")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
def codes_list(limit: int) -> None:
    """Codes newest first, masked to their last 4 characters."""
    from reapi.billing.money import format_usd
    from reapi.operations import codes as code_ops

    for r in _op(code_ops.list_codes, limit, write=False):
        state = f"redeemed by account {r['redeemed_by']}" if r["redeemed_at"] is not None else "unused"
        if r["redeemed_at"] is None and r["expires_at"] is not None and r["expires_at"] <= time.time() * 1000:
            state = "expired"
        click.echo(f"{r['id']}\tRC-****-****-****-{r['last4']}\t{format_usd(r['amount_nano'])} USD\t{r['wallet']}\t"
                   f"{r['batch']}\t{state}")


@main.group()
def users() -> None:
    """Console users (each owns one account)."""


def _users_op(fn, *args, **kw) -> Any:
    return _op(fn, *args, hints={"email": "EMAIL", "password": "--password"}, **kw)


@users.command("create")
@click.argument("email")
@click.option("--password", default=None, help="At least 8 characters; omitted: a random one is printed once.")
@click.option("--admin", is_flag=True, help="May open the operator pages.")
def users_create(email: str, password: str | None, admin: bool) -> None:
    """Create a user with a new account (verified: it can sign in at once)."""
    import secrets

    from reapi.operations import users as u

    shown = password is None
    password = password if password is not None else secrets.token_urlsafe(12)
    try:
        hashed = _run(u.hash_password(password))
    except Exception as err:  # GatewayError: the password rules
        raise click.BadParameter(str(err), param_hint="--password") from None
    user = _users_op(u.create_user, email, hashed, is_admin=admin)
    click.echo(f"user {user['id']}: {user['email']} (account {user['account_id']}){' admin' if admin else ''}")
    if shown:
        click.echo(f"password: {password}")
        click.echo("(shown once)", err=True)


@users.command("set-password")
@click.argument("email")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="The new password (prompted for when omitted).")
def users_set_password(email: str, password: str) -> None:
    """Set a user's password; every session of the user ends."""
    from reapi.operations import users as u

    try:
        hashed = _run(u.hash_password(password))
    except Exception as err:
        raise click.BadParameter(str(err), param_hint="--password") from None

    async def go(conn):
        user = await u.find_user(conn, email)
        if user is None:
            from reapi.errors import GatewayError

            raise GatewayError(404, f"No user with the e-mail {email.strip().lower()}.", code="not_found")
        return user["id"], await u.set_password(conn, user["id"], hashed)

    uid, ended = _users_op(go)
    click.echo(f"user {uid}: password set; {ended} session(s) ended")


@main.group()
def ledger() -> None:
    """The books."""


@ledger.command("verify")
def ledger_verify() -> None:
    """Check every balance against its ledger, every usage record against its entries, and every
    top-up against its credit."""
    from reapi.billing.ledger import verify
    from reapi.payments.audit import verify_topups

    async def both(conn):
        return await verify(conn) + await verify_topups(conn)

    problems = _run(_with_conn(both, write=False))
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


def _wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Until something accepts connections on 127.0.0.1:port (the process we started)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise click.ClickException("the demo upstream did not start") from None
            time.sleep(0.05)


def _die_with_parent() -> None:
    """In the demo upstream's process, before exec: end it when `reapi demo` ends, however that ends
    (uvicorn re-raises a SIGTERM after its shutdown, so the `finally` below may never run)."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
                             "--api-key", "demo-upstream-key", "--chunk-delay-ms", "30"],
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
    try:
        _wait_for_port(mock_port, mock)  # else the first calls find no upstream (502)
        secret, task_key, email, password = _run(_seed_demo(f"http://127.0.0.1:{mock_port}"))
        base = f"http://127.0.0.1:{port}"
        click.echo(f"""
reapi demo is starting on {base} (SQLite file: {settings.database_url})
  API key:   {secret}
  tasks key: {task_key}   (10,000 credits: the task API at {base}/api/v1)
  admin key: {settings.admin_key}
  console:   {base}/console  (sign in as {email} / {password})

  curl {base}/v1/chat/completions \\
    -H "Authorization: Bearer {secret}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-5.5", "messages": [{{"role": "user", "content": "Hello"}}], "stream": true}}'

  curl {base}/v1/responses \\
    -H "Authorization: Bearer {secret}" -H "Content-Type: application/json" \\
    -d '{{"model": "gpt-5.5", "input": "Hello", "stream": true}}'

  curl {base}/api/v1/videos/generations \\
    -H "Authorization: Bearer {task_key}" -H "Content-Type: application/json" \\
    -d '{{"model": "doubao-seedance-2.0", "prompt": "a cat runs", "duration": 5}}'
  curl {base}/api/v1/tasks/TASK_ID -H "Authorization: Bearer {task_key}"
""")
        time.sleep(0.2)
        from click import Context

        with Context(serve) as ctx:
            ctx.invoke(serve, host="127.0.0.1", port=port, workers=1)
    finally:
        mock.terminate()


DEMO_PRICES = {  # model: (input, output, cached input, cache write, context window, max output, long context)
    "gpt-5.5": ("5.00", "30.00", "0.50", None, 1_000_000, 128_000, (272_000, "2", "1.5")),
    "gpt-5.4": ("2.50", "15.00", "0.25", None, 1_000_000, 128_000, (272_000, "2", "1.5")),
    "claude-opus-4-8": ("5.00", "25.00", "0.50", "6.25", 200_000, 64_000, None),
    "claude-sonnet-4-6": ("3.00", "15.00", "0.30", "3.75", 200_000, 64_000, None),
}


DEMO_TASK_CHANNELS = {  # channel name: (type, path on the demo upstream, the task models it serves)
    "demo-ark": ("ark", "/api/v3", ["doubao-seedance-2.0"]),
    "demo-images": ("openai-images", "/v1", ["gpt-image-2"]),
    "demo-reapi-tasks": ("reapi-tasks", "/api/v1", ["mureka-v9-song"]),
}


DEMO_USER = "demo@example.com"


async def _seed_demo(mock_url: str) -> tuple[str, str, str, str]:
    """Channels to the demo upstream, its prices and task models, and a console user whose account is
    funded in both wallets; returns a new chat key and a new tasks key (rk_live_...) of that account,
    and the user's e-mail and (new) password."""
    import secrets

    from reapi import operations as ops
    from reapi.operations import users
    from reapi.store import queries

    password = secrets.token_urlsafe(9)
    hashed = await users.hash_password(password)

    async def go(conn):
        from reapi.operations.task_models import set_task_model
        from reapi.tasks.demo_models import DEMO_TASK_MODELS

        urls = {"openai": mock_url + "/v1", "anthropic": mock_url}
        urls.update({t: mock_url + path for t, path, _ in DEMO_TASK_CHANNELS.values()})
        demo = [ch for ch in await queries.list_channels(conn) if ch["name"].startswith("demo-")]
        if not demo:
            await ops.create_channel(conn, name="demo-openai", type="openai", base_url=urls["openai"],
                                     api_key="demo-upstream-key", models=["gpt-5.5", "gpt-5.4"])
            await ops.create_channel(conn, name="demo-anthropic", type="anthropic", base_url=urls["anthropic"],
                                     api_key="demo-upstream-key", models=["claude-opus-4-8", "claude-sonnet-4-6"])
        have = {ch["name"] for ch in demo}
        for name, (type_, _path, served) in DEMO_TASK_CHANNELS.items():
            if name not in have:  # stores seeded by an older release get their task channels too
                await ops.create_channel(conn, name=name, type=type_, base_url=urls[type_],
                                         api_key="demo-upstream-key", models=served)
        for ch in demo:  # the demo upstream gets a new port each run
            await ops.update_channel(conn, ch["id"], base_url=urls[ch["type"]])
        for name, (i, o, c, w, ctx, mx, lc) in DEMO_PRICES.items():
            await ops.set_price(conn, name, input_usd_per_mtok=i, output_usd_per_mtok=o, cached_input_usd_per_mtok=c,
                                cache_write_usd_per_mtok=w, context_window=ctx, max_output_tokens=mx,
                                long_context=lc and {"threshold_tokens": lc[0], "input_multiplier": lc[1],
                                                     "output_multiplier": lc[2]})
        for name, spec in DEMO_TASK_MODELS.items():
            await set_task_model(conn, name, **spec)
        user = await users.find_user(conn, DEMO_USER)
        if user is None:
            user = await users.create_user(conn, DEMO_USER, hashed)
            await ops.add_credit(conn, user["account_id"], "10.00", note="demo credit")
            await ops.add_credit(conn, user["account_id"], "10.00", wallet="tasks", note="demo credit")
        else:
            await users.set_password(conn, user["id"], hashed)
        account = user["account_id"]
        chat = (await ops.create_key(conn, account, name="demo"))["key"]
        tasks = (await ops.create_key(conn, account, name="demo-tasks", workspace="tasks"))["key"]
        return chat, tasks, DEMO_USER, password

    return await _with_conn(go)
