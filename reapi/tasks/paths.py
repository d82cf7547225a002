"""The task gateway's route table: every route /api/v1 answers, as data. reapi.tasks.api dispatches
from it (a route exists only here) and the public OpenAPI document (reapi.site.openapi) describes
it, so neither can drift from the other. Plain data, no handlers: the site reads it without loading
the task wing."""
from __future__ import annotations

from dataclasses import dataclass

PREFIX = "/api/v1"
SUBMIT_ENDPOINTS = ("images", "videos", "audio")  # POST /api/v1/{endpoint}/generations


@dataclass(frozen=True)
class TaskRoute:
    method: str
    path: str  # an OpenAPI path template; "{id}" is the one parameter
    handler: str  # the name reapi.tasks.api maps to its function
    summary: str


TASK_ROUTES: tuple[TaskRoute, ...] = (
    *(TaskRoute("POST", f"{PREFIX}/{e}/generations", "submit", f"Submit a task to the {e} endpoint")
      for e in SUBMIT_ENDPOINTS),
    TaskRoute("POST", f"{PREFIX}/quote", "quote", "The exact cost of a submit body; nothing is submitted"),
    TaskRoute("GET", f"{PREFIX}/tasks", "list_tasks", "The account's tasks, newest first"),
    TaskRoute("GET", f"{PREFIX}/tasks/{{id}}", "get_task", "One task (served from the store)"),
    TaskRoute("GET", f"{PREFIX}/tasks/{{id}}/deliveries", "deliveries", "A task's webhook deliveries"),
    TaskRoute("GET", f"{PREFIX}/models", "list_models", "The task models this key may use"),
    TaskRoute("GET", f"{PREFIX}/balance", "balance", "The tasks wallet in credits"),
    TaskRoute("GET", f"{PREFIX}/webhooks/secret", "webhook_secret", "The account's webhook signing secret"),
    TaskRoute("POST", f"{PREFIX}/webhooks/secret/rotate", "rotate_secret",
              "A new signing secret (the old one also signs for 24 h)"),
)
