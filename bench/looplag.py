"""The server's own event-loop lag, from its /metrics (reapi_event_loop_lag_seconds): how many of its
25 ms timer wake-ups came late by more than a bound between two scrapes, and the worst one's bucket.
A stall the server caused shows here; one the benchmark's client caused does not."""
from __future__ import annotations

import urllib.request


def scrape(base: str) -> dict[float, float]:
    """The histogram's buckets: upper bound (s) -> cumulative count."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    fam = next(f for f in text_string_to_metric_families(text) if f.name == "reapi_event_loop_lag_seconds")
    return {float(s.labels["le"]): s.value for s in fam.samples if s.name.endswith("_bucket")}


def over(before: dict[float, float], after: dict[float, float], limit: float) -> int:
    """Wake-ups between the two scrapes that came more than `limit` seconds late (a bucket bound)."""
    inf = float("inf")
    return int((after[inf] - before[inf]) - (after[limit] - before[limit]))


def worst(before: dict[float, float], after: dict[float, float]) -> str:
    """The bucket the worst lag between the two scrapes fell in, as "(lo, hi] ms"."""
    bounds = sorted(after)
    seen = [after[b] - before[b] for b in bounds]  # cumulative, as Prometheus keeps them
    i = seen.index(seen[-1])  # the first bucket that holds every wake-up holds the worst
    return f"({bounds[i - 1] * 1000 if i else 0:g}, {bounds[i] * 1000:g}] ms"
