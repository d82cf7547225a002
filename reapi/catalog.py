"""Read-only snapshots of the operator's configuration, as the hot path sees them.

The store loads these from the database into memory (see reapi.store.cache) and
swaps in a new snapshot whenever an admin change bumps the config version, so a
request never queries the database for its key, channel or price.

Model aliases are resolved when a snapshot is built (reapi.store.cache.load_snapshot), so the objects
here need no alias logic of their own: an alias maps to its model's Price (whose `model` is the
model's own name, the one usage records carry), to the model's channel tiers, each Channel's
`model_map` maps the alias to the model's upstream name, and an ApiKey's `models` allow-list holds
every name of each model it names.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Channel:
    id: int
    name: str
    type: str  # "openai" | "anthropic" (chat); "ark" | "openai-images" | "reapi-tasks" (tasks)
    base_url: str  # e.g. "https://api.openai.com/v1" (no trailing slash)
    api_key: str  # the upstream secret; never leaves the process
    models: tuple[str, ...]
    groups: tuple[str, ...]
    priority: int = 0
    weight: int = 1
    model_map: dict[str, str] = field(default_factory=dict)
    enabled: bool = True

    def upstream_model(self, public: str) -> str:
        return self.model_map.get(public, public)


@dataclass(frozen=True, slots=True)
class LongContext:
    threshold_tokens: int  # input tokens strictly above this bill at the multipliers
    input_multiplier_milli: int  # 2x == 2000
    output_multiplier_milli: int  # 1.5x == 1500


@dataclass(frozen=True, slots=True)
class Price:
    """A model's rate card. Rates are integer micro-USD per 1M tokens ($1.25/M == 1_250_000)."""

    model: str
    input_micro: int
    output_micro: int
    cached_input_micro: int | None = None  # cache reads; None: bill at input_micro
    cache_write_micro: int | None = None  # cache writes; None: bill at input_micro
    context_window: int = 128_000
    max_output_tokens: int = 16_384
    long_context: LongContext | None = None


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """A model's entry in the public catalog (reapi.site), operator-edited; never read by the hot path."""
    description: str | None = None
    category: str = "chat"  # chat | image | video | audio | tools
    tags: tuple[str, ...] = ()
    hidden: bool = False  # not in the public catalog (the model still answers calls)


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    rpm: int | None = None  # per account within the group
    tpm: int | None = None
    total_rpm: int | None = None  # whole group, all accounts together
    total_tpm: int | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    account_id: int
    name: str
    groups: tuple[str, ...] | None  # None: any group
    models: tuple[str, ...] | None  # None: any model
    spend_limit_nano: int | None = None
    rpm: int | None = None
    tpm: int | None = None
    workspace: str = "chat"  # the wallet it spends: "chat" (/v1) or "tasks" (the task gateway)
    expires_at: int | None = None  # ms since the epoch; from then on the key opens nothing
    webhook_url: str | None = None  # tasks keys: the webhook of a submit whose body names none

    def expired(self, now_ms: int) -> bool:
        return self.expires_at is not None and now_ms >= self.expires_at


TASK_CHANNEL_TYPES = ("ark", "openai-images", "reapi-tasks")  # channels of the task gateway, not of /v1


@dataclass(frozen=True, slots=True)
class Sku:
    when: dict  # field -> value; a field absent from the body matches its schema default
    nano_per_unit: int  # credits_per_unit in nano-USD (1 credit = 1,000,000 nano-USD)


@dataclass(frozen=True, slots=True)
class TaskModel:
    """A task model's price list and accepted parameters (the task gateway's rate card)."""
    name: str
    category: str  # image | video | audio
    endpoint: str  # images | videos | audio: the submit route that takes it
    unit: str  # image | second | generation | song | minute | request
    quantity: tuple[str, ...]  # integer fields multiplied together (default 1 each)
    skus: tuple[Sku, ...]  # first match wins
    params: dict  # JSON Schema subset of the accepted body fields
    max_seconds: int
    description: str | None = None
    tags: tuple[str, ...] = ()
    hidden: bool = False  # not in the public catalog (the model still takes tasks)
