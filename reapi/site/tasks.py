"""The public catalog of task models (image, video, audio): the snapshot's `task_models` that a
channel serves, with their SKUs priced as the task gateway bills them (reapi.tasks.pricing) and their
body parameters read from the model's JSON Schema. 1,000 credits = 1 USD."""
from __future__ import annotations

import json
from dataclasses import dataclass

from reapi.billing.money import format_credits, format_usd
from reapi.catalog import TaskModel
from reapi.tasks.errors import CODES
from reapi.tasks.pricing import cost_nano, quantity

RANGE_KEYS = (("minimum", "min"), ("maximum", "max"), ("minLength", "min length"), ("maxLength", "max length"),
              ("minItems", "min items"), ("maxItems", "max items"))


def _when(when: dict) -> str:
    return ", ".join(f"{k} = {json.dumps(v)}" for k, v in when.items()) or "always"


def param_rows(params: dict) -> list[dict]:
    """One row per body field of a task model's schema: type, required, default, range, enum."""
    required = set(params.get("required") or ())
    rows = [{"name": "model", "type": "string", "required": True, "default": "", "range": "",
             "enum": [], "description": "this model's name"}]
    for name, s in (params.get("properties") or {}).items():
        typ = s.get("type", "any")
        if typ == "array" and isinstance(s.get("items"), dict):
            typ = f"array of {s['items'].get('type', 'any')}"
        rng = ", ".join(f"{label} {s[k]}" for k, label in RANGE_KEYS if k in s)
        if s.get("format") == "uri" or (isinstance(s.get("items"), dict) and s["items"].get("format") == "uri"):
            rng = ", ".join(x for x in (rng, "http(s) URLs") if x)
        rows.append({"name": name, "type": typ, "required": name in required,
                     "default": json.dumps(s["default"]) if "default" in s else "", "range": rng,
                     "enum": [json.dumps(v) if not isinstance(v, str) else v for v in s.get("enum") or ()],
                     "description": s.get("description") or ""})
    return rows


@dataclass(frozen=True)
class TaskEntry:
    model: TaskModel

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def summary(self) -> str:
        """The description on one line (it feeds /llms.txt's one-line entries), or a generated line."""
        text = " ".join((self.model.description or "").split())[:240]
        return text or f"{self.name}: {self.model.category} generation, billed per {self.model.unit}."

    @property
    def endpoint(self) -> str:
        return f"/api/v1/{self.model.endpoint}/generations"

    def skus(self) -> list[dict]:
        return [{"when": dict(s.when), "conditions": _when(s.when), "credits_per_unit": format_credits(s.nano_per_unit),
                 "usd_per_unit": format_usd(s.nano_per_unit)} for s in self.model.skus]

    def example_body(self) -> dict:
        """A body the samples send: the required strings filled, the first SKU's conditions set."""
        m = self.model
        body: dict = {"model": m.name}
        props = m.params.get("properties") or {}
        for f in m.params.get("required") or ():
            s = props.get(f, {})
            if s.get("type") == "string":
                body[f] = "A red fox running through fresh snow at dawn"[: s.get("maxLength", 4000)]
        if m.skus:
            body.update(m.skus[0].when)
        return body

    def example(self) -> dict:
        """The worked example: the sample body priced by the task gateway's own function."""
        body = self.example_body()
        fields = {k: v for k, v in body.items() if k != "model"}
        nano = cost_nano(self.model, fields)
        return {"body": body, "quantity": quantity(self.model, fields), "cost_nano": nano,
                "cost_credits": format_credits(nano), "cost_usd": format_usd(nano)}

    def view(self) -> dict:
        m = self.model
        nanos = [s.nano_per_unit for s in m.skus] or [0]
        return {"name": m.name, "kind": "task", "category": m.category, "summary": self.summary,
                "description": m.description, "tags": list(m.tags), "endpoint": self.endpoint, "unit": m.unit,
                "quantity": list(m.quantity), "max_seconds": m.max_seconds, "skus": self.skus(),
                "from_credits": format_credits(min(nanos)), "from_usd": format_usd(min(nanos))}


def task_entries(snap) -> list[TaskEntry]:
    """The task models some channel serves (in any group) and the operator has not hidden, by name."""
    served = {name for (_, name) in getattr(snap, "task_pools", {})}
    models = getattr(snap, "task_models", {})
    return [TaskEntry(models[n]) for n in sorted(models) if n in served and not models[n].hidden]


def find_task(snap, name: str) -> TaskEntry | None:
    return next((e for e in task_entries(snap) if e.name == name), None)


def error_rows() -> list[dict]:
    return [{"code": c, "status": s, "meaning": what} for c, (s, what) in sorted(CODES.items())]
