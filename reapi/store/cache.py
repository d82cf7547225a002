"""The in-memory catalog: keys, channels, prices and groups, reloaded on admin changes.

Every admin write bumps meta.config_version in the same transaction. Each
instance polls that one row (REAPI_CONFIG_POLL_MS, default 1 s) and reloads the
whole catalog when it moved, so a revoked key or a new price reaches every
instance within about a second while the hot path never queries the store for them.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
from dataclasses import dataclass, field, replace

import orjson
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reapi import metrics
from reapi.aio import stop_tasks
from reapi.catalog import TASK_CHANNEL_TYPES, ApiKey, Channel, Group, LongContext, ModelInfo, Price, Sku, TaskModel
from reapi.store import schema
from reapi.store.db import connect_readonly, sqlite_path

log = logging.getLogger("reapi.store")


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _tuple_or_none(raw: str | None) -> tuple[str, ...] | None:
    return None if raw is None else tuple(orjson.loads(raw))


@dataclass
class Snapshot:
    version: int = -1
    # By sha256 hex of the secret. Only chat keys: /v1 looks keys up here, so a tasks key is
    # unknown to it (401 invalid_api_key) without a check on the hot path.
    keys: dict[str, ApiKey] = field(default_factory=dict)
    task_keys: dict[str, ApiKey] = field(default_factory=dict)  # the task gateway's keys, likewise
    prices: dict[str, Price] = field(default_factory=dict)
    groups: dict[str, Group] = field(default_factory=dict)
    # (group, model) -> priority tiers, highest first; each tier a list of enabled channels.
    pools: dict[tuple[str, str], list[list[Channel]]] = field(default_factory=dict)
    channels: dict[int, Channel] = field(default_factory=dict)
    # Model aliases (README "Models and aliases"): alias -> its model. An alias has the model's Price in
    # `prices` (Price.model is the model's own name) and the model's tiers in `pools`, and every channel
    # serving the model maps the alias to the model's upstream name.
    aliases: dict[str, str] = field(default_factory=dict)
    created: dict[str, int] = field(default_factory=dict)  # model -> when it was first priced (unix s)
    info: dict[str, ModelInfo] = field(default_factory=dict)  # model -> its public catalog entry (reapi.site)
    views: dict = field(default_factory=dict)  # answers prebuilt from this snapshot (reapi.api.models)
    # The task gateway's: its models, and its pools (channels of the task types only; chat pools
    # never hold them, so /v1 never sends a chat call to a task upstream, nor the reverse).
    task_models: dict[str, TaskModel] = field(default_factory=dict)
    task_pools: dict[tuple[str, str], list[list[Channel]]] = field(default_factory=dict)

    def served_models(self, groups: tuple[str, ...] | None) -> list[str]:
        """Models with a price and at least one enabled channel in one of `groups` (None: any); their own
        names, not their aliases."""
        aliases = self.aliases
        out = {m for (g, m) in self.pools
               if m in self.prices and m not in aliases and (groups is None or g in groups)}
        return sorted(out)

    def aliases_of(self, model: str) -> list[str]:
        return sorted(a for a, m in self.aliases.items() if m == model)


def read_aliases(rows: list[dict]) -> dict[str, str]:
    """alias -> model from the models' rows. The admin API refuses a name taken twice (409); should the
    store hold one anyway (two writers racing), a model's own name wins, then the first model by name."""
    names = {r["name"] for r in rows}
    out: dict[str, str] = {}
    for r in sorted(rows, key=lambda r: r["name"]):
        for alias in orjson.loads(r["aliases"]) if r["aliases"] else ():
            if alias in names or alias in out:
                log.warning("model alias %r of %r ignored: the name is taken", alias, r["name"])
                continue
            out[alias] = r["name"]
    return out


def with_aliases(names: tuple[str, ...] | None, aliases: dict[str, str],
                 by_model: dict[str, list[str]]) -> tuple[str, ...] | None:
    """A key's model allow-list with every name of each model it names (a model's or an alias)."""
    if names is None:
        return None
    models = {aliases.get(n, n) for n in names}
    return tuple(sorted(set(names) | models | {a for m in models for a in by_model.get(m, ())}))


async def load_snapshot(conn: AsyncConnection) -> Snapshot:
    snap = Snapshot()
    snap.version = (await conn.execute(
        select(schema.meta.c.value).where(schema.meta.c.key == "config_version"))).scalar_one()
    rows = [dict(r) for r in (await conn.execute(select(schema.models))).mappings()]
    for r in rows:
        lc = None
        if r["lc_threshold_tokens"] is not None:
            lc = LongContext(r["lc_threshold_tokens"], r["lc_input_milli"], r["lc_output_milli"])
        snap.prices[r["name"]] = Price(
            model=r["name"], input_micro=r["input_micro"], output_micro=r["output_micro"],
            cached_input_micro=r["cached_input_micro"], cache_write_micro=r["cache_write_micro"],
            context_window=r["context_window"], max_output_tokens=r["max_output_tokens"], long_context=lc)
        snap.created[r["name"]] = r["created_at"] // 1000
        snap.info[r["name"]] = ModelInfo(r["description"], r["category"],
                                         tuple(orjson.loads(r["tags"])) if r["tags"] else (), bool(r["hidden"]))
    snap.aliases = aliases = read_aliases(rows)
    by_model: dict[str, list[str]] = {}
    for alias, model in aliases.items():
        snap.prices[alias] = snap.prices[model]
        by_model.setdefault(model, []).append(alias)
    by_workspace = {"chat": snap.keys, "tasks": snap.task_keys}
    for r in (await conn.execute(select(schema.api_keys).where(schema.api_keys.c.revoked_at.is_(None)))).mappings():
        keys = by_workspace.get(r["workspace"])
        if keys is None:  # a workspace this release does not serve: its keys open nothing
            continue
        keys[r["key_hash"]] = ApiKey(
            id=r["id"], account_id=r["account_id"], name=r["name"], groups=_tuple_or_none(r["groups"]),
            models=with_aliases(_tuple_or_none(r["models"]), aliases, by_model),
            spend_limit_nano=r["spend_limit_nano"], rpm=r["rpm"], tpm=r["tpm"], workspace=r["workspace"],
            expires_at=r["expires_at"], webhook_url=r["webhook_url"])
    snap.groups["default"] = Group("default")
    for r in (await conn.execute(select(schema.groups))).mappings():
        snap.groups[r["name"]] = Group(r["name"], r["rpm"], r["tpm"], r["total_rpm"], r["total_tpm"])
    tiers: dict[tuple[str, str], dict[int, list[Channel]]] = {}
    task_tiers: dict[tuple[str, str], dict[int, list[Channel]]] = {}
    for r in (await conn.execute(select(schema.channels).order_by(schema.channels.c.id))).mappings():
        ch = Channel(
            id=r["id"], name=r["name"], type=r["type"], base_url=r["base_url"], api_key=r["api_key"],
            models=tuple(orjson.loads(r["models"])), groups=tuple(orjson.loads(r["groups"])),
            priority=r["priority"], weight=r["weight"], model_map=orjson.loads(r["model_map"]),
            enabled=bool(r["enabled"]))
        extra = {a: ch.upstream_model(m) for m in ch.models for a in by_model.get(m, ())}
        if extra:  # the channel answers to its models' aliases, under the models' upstream names
            ch = replace(ch, model_map={**ch.model_map, **extra})
        snap.channels[ch.id] = ch
        if not ch.enabled or ch.weight <= 0:
            continue
        into = task_tiers if ch.type in TASK_CHANNEL_TYPES else tiers
        for g in ch.groups:
            for m in ch.models:
                if m in aliases:  # a channel listing an alias by name: the alias routes as its model
                    continue
                into.setdefault((g, m), {}).setdefault(ch.priority, []).append(ch)
                for a in by_model.get(m, ()):
                    into.setdefault((g, a), {}).setdefault(ch.priority, []).append(ch)
    for pool_key, by_priority in tiers.items():
        snap.pools[pool_key] = [by_priority[p] for p in sorted(by_priority, reverse=True)]
    for pool_key, by_priority in task_tiers.items():
        snap.task_pools[pool_key] = [by_priority[p] for p in sorted(by_priority, reverse=True)]
    for r in (await conn.execute(select(schema.task_models))).mappings():
        snap.task_models[r["name"]] = task_model_of(r)
    return snap


def task_model_of(r) -> TaskModel:
    """A task_models row as the catalog holds it."""
    return TaskModel(
        name=r["name"], category=r["category"], endpoint=r["endpoint"], unit=r["unit"],
        quantity=tuple(orjson.loads(r["quantity"])),
        skus=tuple(Sku(s["when"], s["nano_per_unit"]) for s in orjson.loads(r["skus"])),
        params=orjson.loads(r["params"]), max_seconds=r["max_seconds"], description=r["description"],
        tags=tuple(orjson.loads(r["tags"])) if r.get("tags") else (), hidden=bool(r.get("hidden")))


def publish_names(snap: Snapshot) -> None:
    """Tell the metrics which model, group and channel names are configured (metric labels)."""
    models = set(snap.prices) | set(snap.task_models)
    groups = set(snap.groups)
    for ch in snap.channels.values():
        models.update(ch.models)
        groups.update(ch.groups)
    metrics.learn_catalog(models, groups, snap.channels)


async def bump_version(conn: AsyncConnection) -> None:
    """Call inside the transaction of every admin change."""
    await conn.execute(update(schema.meta).where(schema.meta.c.key == "config_version")
                       .values(value=schema.meta.c.value + 1))


class CatalogCache:
    def __init__(self, engine: AsyncEngine, poll_ms: int = 1000) -> None:
        self.engine = engine
        self.poll_s = poll_ms / 1000
        self.snapshot = Snapshot()
        self._task: asyncio.Task | None = None
        # SQLite: the version is read on the event loop from a plain read-only connection
        # (microseconds, and a WAL reader never waits). Through aiosqlite's thread, every
        # poll cost a request in flight tens of milliseconds of GIL hand-offs.
        self._sqlite_file = sqlite_path(engine.url) if engine.dialect.name == "sqlite" else None
        self._sqlite: sqlite3.Connection | None = None

    async def reload(self) -> None:
        async with self.engine.connect() as conn:
            snap = await load_snapshot(conn)
        self.snapshot = snap
        publish_names(snap)

    async def _current_version(self) -> int:
        if self._sqlite_file is not None:
            if self._sqlite is None:
                self._sqlite = connect_readonly(self._sqlite_file)
            # fetchall: run the statement to its end, or its read snapshot would stay open
            # and pin the WAL (no checkpoint could finish, the file would grow forever)
            return self._sqlite.execute("SELECT value FROM meta WHERE key = 'config_version'").fetchall()[0][0]
        async with self.engine.connect() as conn:
            return (await conn.execute(
                select(schema.meta.c.value).where(schema.meta.c.key == "config_version"))).scalar_one()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                if await self._current_version() != self.snapshot.version:
                    await self.reload()
            except Exception:  # the store may be briefly unreachable; keep serving the last snapshot
                log.exception("catalog reload failed; serving the previous snapshot")

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        task, self._task = self._task, None
        await stop_tasks(task)
        if self._sqlite is not None:
            self._sqlite.close()
            self._sqlite = None
