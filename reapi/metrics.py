"""Prometheus metrics for the gateway, cheap enough for every request.

Everything lives in the module-level ``REGISTRY`` (not prometheus_client's global default
registry), exported by ``render()`` for ``GET /metrics``.

Hot path cost: each labelled metric keeps a dict from the label tuple to its child, so a
call does one dict lookup per metric family (one for the request counter, one for all the
per-model series together) and the child's own increment; label resolution happens only
the first time a label combination is seen.

Labels are only ever names the operator configured: the catalog cache calls
``learn_catalog`` on each reload with the configured models, groups and channels, and
every other value (a client's invented ``model`` or ``group``, a deleted channel) is
counted under ``other`` (one set lookup per label). So the number of series is bounded by
the configuration, never by what clients send, and a scrape stays small and fast.

Money: cost arrives as integer nano-USD and is summed as an integer; it becomes a float
(USD) only when the exposition is rendered.

Series:
  reapi_requests_total{model,group,status}       counter, status = HTTP status code
  reapi_upstream_latency_seconds{model}          histogram, whole upstream call
  reapi_time_to_first_token_seconds{model}       histogram, streams
  reapi_tokens_total{model,kind}                 counter, kind = prompt|completion
  reapi_cost_usd_total{model}                    counter
  reapi_holds_outstanding                        gauge
  reapi_rate_limited_total{group,kind}           counter
  reapi_channel_open{channel}                    gauge, 1 while the channel cools down
  reapi_event_loop_lag_seconds                   histogram, how late a 25 ms timer ran
"""
from __future__ import annotations

import logging
import threading
from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.registry import Collector

log = logging.getLogger("reapi.metrics")

REGISTRY = CollectorRegistry()
# No *_created sample beside every counter and histogram: it would double the exposition
# for a value Prometheus does not need (process-wide; reapi is this process's only user).
disable_created_metrics()

# 5 ms .. 120 s, roughly 1-2.5-5 steps.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   20.0, 30.0, 60.0, 120.0)
OTHER = "other"

REQUESTS = Counter("reapi_requests_total", "Requests answered, by model, group and HTTP status.",
                   ("model", "group", "status"), registry=REGISTRY)
UPSTREAM_LATENCY = Histogram("reapi_upstream_latency_seconds",
                             "Duration of the whole upstream call.", ("model",),
                             buckets=LATENCY_BUCKETS, registry=REGISTRY)
TTFT = Histogram("reapi_time_to_first_token_seconds",
                 "Time from sending the upstream request to the first streamed token.", ("model",),
                 buckets=LATENCY_BUCKETS, registry=REGISTRY)
TOKENS = Counter("reapi_tokens_total", "Tokens billed, by model and kind (prompt|completion).",
                 ("model", "kind"), registry=REGISTRY)
HOLDS = Gauge("reapi_holds_outstanding", "Balance holds currently open.", registry=REGISTRY)
EVENT_LOOP_LAG = Histogram("reapi_event_loop_lag_seconds",
                           "How late the event loop ran a 25 ms timer (the wait every request on it shared).",
                           buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=REGISTRY)
loop_lag = EVENT_LOOP_LAG.observe
RATE_LIMITED = Counter("reapi_rate_limited_total", "Requests refused by a rate limit.",
                       ("group", "kind"), registry=REGISTRY)

_lock = threading.Lock()  # guards cache misses and the integer cost sums
# The configured names (see learn_catalog); replaced whole, never mutated, so readers need no lock.
_models: frozenset[str] = frozenset()
_groups: frozenset[str] = frozenset()
_channels: frozenset[str] = frozenset()
_req_children: dict[tuple[str, str, int], object] = {}
# model -> (latency child, ttft child, prompt tokens child, completion tokens child, label)
_model_children: dict[str, tuple] = {}
_rl_children: dict[tuple[str, str], object] = {}
_cost_nano: dict[str, int] = {}


def learn_catalog(models: Iterable[str], groups: Iterable[str], channels: Iterable[int | str]) -> None:
    """The names that may appear as labels from now on; anything else becomes ``other``.
    Called by the catalog cache on every reload. Series already created stay."""
    global _models, _groups, _channels
    _models = frozenset(models) - {OTHER}
    _groups = frozenset(groups) - {OTHER}
    _channels = frozenset(str(c) for c in channels)


def model_label(model: str) -> str:
    return model if model in _models else OTHER


def group_label(group: str) -> str:
    return group if group in _groups else OTHER


def _per_model(m: str) -> tuple:
    with _lock:
        ch = _model_children.get(m)
        if ch is None:
            ch = _model_children[m] = (UPSTREAM_LATENCY.labels(m), TTFT.labels(m),
                                       TOKENS.labels(m, "prompt"), TOKENS.labels(m, "completion"), m)
        return ch


def _request_child(key: tuple[str, str, int]):
    with _lock:
        ch = _req_children.get(key)
        if ch is None:
            ch = _req_children[key] = REQUESTS.labels(key[0], key[1], str(key[2]))
        return ch


def observe_request(model: str, group: str, status: int, *, upstream_s: float | None = None,
                    ttft_s: float | None = None, prompt_tokens: int = 0,
                    completion_tokens: int = 0, cost_nano: int = 0) -> None:
    """Record one finished request. ``cost_nano`` is the billed cost in integer nano-USD."""
    m = model if model in _models else OTHER
    key = (m, group if group in _groups else OTHER, status)
    ch = _req_children.get(key)
    if ch is None:
        ch = _request_child(key)
    ch.inc()
    if upstream_s is None and ttft_s is None and not prompt_tokens and not completion_tokens \
            and not cost_nano:
        return
    mc = _model_children.get(m)
    if mc is None:
        mc = _per_model(m)
    if upstream_s is not None:
        mc[0].observe(upstream_s)
    if ttft_s is not None:
        mc[1].observe(ttft_s)
    if prompt_tokens > 0:  # counts come from upstreams: a negative one must not raise here
        mc[2].inc(prompt_tokens)
    if completion_tokens > 0:
        mc[3].inc(completion_tokens)
    if cost_nano > 0:
        with _lock:
            _cost_nano[m] = _cost_nano.get(m, 0) + cost_nano


def hold_opened() -> None:
    HOLDS.inc()


def hold_closed() -> None:
    HOLDS.dec()


def rate_limited(group: str, kind: str) -> None:
    key = (group if group in _groups else OTHER, kind)
    ch = _rl_children.get(key)
    if ch is None:
        with _lock:
            ch = _rl_children.get(key)
            if ch is None:
                ch = _rl_children[key] = RATE_LIMITED.labels(*key)
    ch.inc()


class _CostCollector(Collector):
    """reapi_cost_usd_total from the integer nano-USD sums, converted at scrape time."""

    def describe(self) -> Iterable[Metric]:
        return [CounterMetricFamily("reapi_cost_usd", "Billed cost in USD.", labels=("model",))]

    def collect(self) -> Iterable[Metric]:
        fam = CounterMetricFamily("reapi_cost_usd", "Billed cost in USD.", labels=("model",))
        with _lock:
            items = sorted(_cost_nano.items())
        for model, nano in items:
            fam.add_metric((model,), nano / 1_000_000_000)
        return [fam]


_health_provider: Callable[[], dict[int, dict]] | None = None


class _ChannelCollector(Collector):
    """reapi_channel_open from ChannelHealth.states(), read at scrape time."""

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("reapi_channel_open", "1 while the channel is in cool-down.",
                                  labels=("channel",))]

    def collect(self) -> Iterable[Metric]:
        fam = GaugeMetricFamily("reapi_channel_open", "1 while the channel is in cool-down.",
                                labels=("channel",))
        fn = _health_provider
        if fn is not None:
            try:
                states = fn()
            except Exception:
                log.exception("channel health provider failed; reapi_channel_open left empty")
                states = {}
            known = _channels
            for cid in sorted(states):
                if str(cid) in known:  # a deleted channel's state is not exported
                    fam.add_metric((str(cid),), 1.0 if states[cid].get("state") == "open" else 0.0)
        return [fam]


# --- the task gateway's (set by its worker; the scrape never reads the store) ------------------

TASK_STATES = ("queued", "submitting", "running")  # open tasks; ended ones: reapi_tasks_finished_total
TASK_UPSTREAM_LATENCY = Histogram("reapi_task_upstream_latency_seconds",
                                  "Task upstream requests (submits and polls), seconds to the whole answer.",
                                  buckets=LATENCY_BUCKETS, registry=REGISTRY)
TASKS_FINISHED = Counter("reapi_tasks_finished_total", "Tasks ended by this process's worker, by status.",
                         ("status",), registry=REGISTRY)
_task_stats: dict = {}


def task_upstream_latency(seconds: float) -> None:
    TASK_UPSTREAM_LATENCY.observe(seconds)


def task_finished(status: str) -> None:
    TASKS_FINISHED.labels(status if status in ("completed", "failed") else OTHER).inc()


def set_task_stats(by_state: dict[str, int], queue_depth: int, oldest_running_s: float) -> None:
    """The store's task counts, refreshed by the worker every few seconds."""
    global _task_stats
    _task_stats = {"by_state": {k: int(by_state.get(k, 0)) for k in TASK_STATES}, "queue": int(queue_depth),
                   "oldest": float(oldest_running_s)}


class _TaskCollector(Collector):
    """reapi_tasks{state}, reapi_task_queue_depth, reapi_task_oldest_running_seconds."""

    def _families(self) -> list:
        return [GaugeMetricFamily("reapi_tasks", "Open tasks in the store, by state.", labels=("state",)),
                GaugeMetricFamily("reapi_task_queue_depth", "Tasks due to be submitted (queued, due now)."),
                GaugeMetricFamily("reapi_task_oldest_running_seconds", "Age of the oldest task not yet ended.")]

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        stats = _task_stats
        if not stats:
            return []
        states, queue, oldest = self._families()
        for state in TASK_STATES:
            states.add_metric((state,), stats["by_state"][state])
        queue.add_metric((), stats["queue"])
        oldest.add_metric((), stats["oldest"])
        return [states, queue, oldest]


REGISTRY.register(_CostCollector())
REGISTRY.register(_ChannelCollector())
REGISTRY.register(_TaskCollector())


def set_health_provider(fn: Callable[[], dict[int, dict]] | None) -> None:
    """Give the scrape a source of channel states, normally ``ChannelHealth.states``."""
    global _health_provider
    _health_provider = fn


def render() -> tuple[bytes, str]:
    """The exposition for ``GET /metrics``: (body, Content-Type), Prometheus text 0.0.4.
    Thread-safe; the route runs it off the event loop, since a large catalog (100 models x
    5 groups x 12 statuses) takes a few hundred milliseconds."""
    return generate_latest(REGISTRY), CONTENT_TYPE_PLAIN_0_0_4
