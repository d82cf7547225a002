"""Shared by the task gateway's tests: task models as the catalog holds them, funded accounts."""
from __future__ import annotations

from reapi import operations as ops
from reapi.catalog import ApiKey, TaskModel
from reapi.operations.task_models import task_model_row
from reapi.store.cache import task_model_of
from reapi.tasks.demo_models import DEMO_TASK_MODELS


def model_of(name: str, spec: dict | None = None) -> TaskModel:
    return task_model_of({"name": name, **task_model_row(**(spec or DEMO_TASK_MODELS[name]))})


async def funded_key(engine, tasks_usd: str, name: str = "acme") -> ApiKey:
    """A new account with `tasks_usd` in its tasks wallet and an rk_live_ key, as the catalog holds it."""
    async with engine.begin() as conn:
        acc = await ops.create_account(conn, name)
        if tasks_usd != "0":
            await ops.add_credit(conn, acc["id"], tasks_usd, wallet="tasks")
        k = await ops.create_key(conn, acc["id"], name="t", workspace="tasks")
    return ApiKey(id=k["id"], account_id=acc["id"], name="t", groups=None, models=None, workspace="tasks")


async def tasks_balance(engine, account_id: int) -> int:
    from reapi.store import queries

    async with engine.connect() as conn:
        return (await queries.balances(conn, account_id))["tasks"]
