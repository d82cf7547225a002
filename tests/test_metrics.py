import asyncio
import random
import string
import time
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from reapi import metrics
from reapi.relay.health import ChannelHealth


def scrape() -> dict[tuple[str, tuple], float]:
    body, ctype = metrics.render()
    assert ctype.startswith("text/plain; version=0.0.4")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def val(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def learn(models=(), groups=("default", "pro"), channels=(11, 12)) -> None:
    metrics.learn_catalog(models, groups, channels)


@pytest.fixture
def model():
    m = f"m-{uuid.uuid4().hex[:8]}"
    learn([m])  # a configured model: only those get their own label
    return m


@pytest.fixture(autouse=True)
def _no_provider():
    saved = (metrics._models, metrics._groups, metrics._channels)
    learn()
    yield
    metrics.set_health_provider(None)
    metrics._models, metrics._groups, metrics._channels = saved


def test_requests_latency_tokens_and_cost(model):
    metrics.observe_request(model, "default", 200, upstream_s=0.3, ttft_s=0.004,
                            prompt_tokens=100, completion_tokens=20, cost_nano=1_500_000_000)
    metrics.observe_request(model, "default", 200, upstream_s=7.0, ttft_s=0.2,
                            prompt_tokens=50, completion_tokens=5, cost_nano=250)
    metrics.observe_request(model, "default", 502, upstream_s=121.0)
    metrics.observe_request(model, "pro", 429)
    s = scrape()
    assert val(s, "reapi_requests_total", model=model, group="default", status="200") == 2.0
    assert val(s, "reapi_requests_total", model=model, group="default", status="502") == 1.0
    assert val(s, "reapi_requests_total", model=model, group="pro", status="429") == 1.0
    assert val(s, "reapi_requests_total", model=model, group="pro", status="200") is None

    assert val(s, "reapi_upstream_latency_seconds_count", model=model) == 3.0
    assert val(s, "reapi_upstream_latency_seconds_sum", model=model) == pytest.approx(128.3)
    assert val(s, "reapi_upstream_latency_seconds_bucket", model=model, le="0.005") == 0.0
    assert val(s, "reapi_upstream_latency_seconds_bucket", model=model, le="0.5") == 1.0
    assert val(s, "reapi_upstream_latency_seconds_bucket", model=model, le="10.0") == 2.0
    assert val(s, "reapi_upstream_latency_seconds_bucket", model=model, le="120.0") == 2.0
    assert val(s, "reapi_upstream_latency_seconds_bucket", model=model, le="+Inf") == 3.0

    assert val(s, "reapi_time_to_first_token_seconds_count", model=model) == 2.0
    assert val(s, "reapi_time_to_first_token_seconds_bucket", model=model, le="0.005") == 1.0
    assert val(s, "reapi_time_to_first_token_seconds_bucket", model=model, le="0.25") == 2.0

    assert val(s, "reapi_tokens_total", model=model, kind="prompt") == 150.0
    assert val(s, "reapi_tokens_total", model=model, kind="completion") == 25.0
    assert val(s, "reapi_cost_usd_total", model=model) == 1.50000025


def test_cost_is_summed_as_integer_nano(model):
    for _ in range(1000):
        metrics.observe_request(model, "default", 200, cost_nano=1)  # 1 nano-USD each
    for _ in range(10):
        metrics.observe_request(model, "default", 200, cost_nano=100_000_000)  # $0.1 each
    s = scrape()
    # float accumulation of 0.1 ten times would give 0.9999999999999999; integers give exactly 1.000001
    assert val(s, "reapi_cost_usd_total", model=model) == 1.000001
    assert metrics._cost_nano[model] == 1_000_001_000


def test_only_status_does_not_create_per_model_series(model):
    metrics.observe_request(model, "default", 401)
    s = scrape()
    assert val(s, "reapi_requests_total", model=model, group="default", status="401") == 1.0
    assert val(s, "reapi_upstream_latency_seconds_count", model=model) is None
    assert val(s, "reapi_cost_usd_total", model=model) is None


def test_holds_gauge():
    before = val(scrape(), "reapi_holds_outstanding")
    metrics.hold_opened()
    metrics.hold_opened()
    metrics.hold_closed()
    assert val(scrape(), "reapi_holds_outstanding") == before + 1.0
    metrics.hold_closed()
    assert val(scrape(), "reapi_holds_outstanding") == before


def test_rate_limited():
    group = f"g-{uuid.uuid4().hex[:8]}"
    learn(groups=[group])
    metrics.rate_limited(group, "rpm")
    metrics.rate_limited(group, "rpm")
    metrics.rate_limited(group, "tpm")
    s = scrape()
    assert val(s, "reapi_rate_limited_total", group=group, kind="rpm") == 2.0
    assert val(s, "reapi_rate_limited_total", group=group, kind="tpm") == 1.0


def test_channel_open_from_health_states():
    clock = [0.0]
    h = ChannelHealth(failure_threshold=2, cooldown_s=10, clock=lambda: clock[0])
    metrics.set_health_provider(h.states)
    h.record_failure(11)
    h.record_failure(11)
    h.record_failure(12)
    s = scrape()
    assert val(s, "reapi_channel_open", channel="11") == 1.0
    assert val(s, "reapi_channel_open", channel="12") == 0.0
    clock[0] = 10.0  # cool-down over: half-open is not "in cool-down"
    assert val(scrape(), "reapi_channel_open", channel="11") == 0.0


def test_channel_open_without_provider_or_with_a_failing_one():
    s = scrape()
    assert not [k for k in s if k[0] == "reapi_channel_open"]

    def broken():
        raise RuntimeError("boom")

    metrics.set_health_provider(broken)
    s = scrape()  # the rest of the exposition still renders
    assert not [k for k in s if k[0] == "reapi_channel_open"]
    assert ("reapi_holds_outstanding", ()) in s


def test_label_children_are_cached(model, monkeypatch):
    metrics.observe_request(model, "default", 200, upstream_s=0.1, prompt_tokens=1, completion_tokens=1)
    metrics.rate_limited("default", "rpm")

    def no_labels(*a, **k):
        raise AssertionError("label resolution on a cached hot path")

    for m in (metrics.REQUESTS, metrics.UPSTREAM_LATENCY, metrics.TTFT, metrics.TOKENS, metrics.RATE_LIMITED):
        monkeypatch.setattr(m, "labels", no_labels)
    metrics.observe_request(model, "default", 200, upstream_s=0.2, prompt_tokens=2, completion_tokens=3,
                            cost_nano=5)
    metrics.rate_limited("default", "rpm")
    monkeypatch.undo()
    s = scrape()
    assert val(s, "reapi_requests_total", model=model, group="default", status="200") == 2.0
    assert val(s, "reapi_tokens_total", model=model, kind="completion") == 4.0


def test_only_configured_names_become_labels(model):
    invented_model, invented_group = f"x-{uuid.uuid4().hex}", f"y-{uuid.uuid4().hex}"
    metrics.observe_request(model, "default", 200, prompt_tokens=1)
    metrics.observe_request(invented_model, "default", 404, prompt_tokens=2, cost_nano=7)
    metrics.observe_request(model, invented_group, 400)
    metrics.rate_limited(invented_group, "rpm")
    body = metrics.render()[0].decode()
    assert invented_model not in body and invented_group not in body
    s = scrape()
    assert val(s, "reapi_requests_total", model=model, group="default", status="200") == 1.0
    assert val(s, "reapi_requests_total", model="other", group="default", status="404") >= 1.0
    assert val(s, "reapi_requests_total", model=model, group="other", status="400") == 1.0
    assert val(s, "reapi_tokens_total", model="other", kind="prompt") >= 2.0
    assert val(s, "reapi_rate_limited_total", group="other", kind="rpm") >= 1.0
    # a model learned later (a reload after an admin change) gets its own series from then on
    learn([model, invented_model])
    metrics.observe_request(invented_model, "default", 404)
    assert val(scrape(), "reapi_requests_total", model=invented_model, group="default", status="404") == 1.0


def test_invented_names_do_not_grow_the_exposition(model):
    metrics.observe_request(model, "default", 402)
    before = metrics.render()[0]
    rnd = random.Random(1)
    for i in range(5000):
        junk = "".join(rnd.choices(string.printable, k=rnd.randint(1, 300)))
        metrics.observe_request(junk, junk[::-1], 400 + i % 30, prompt_tokens=1, upstream_s=0.01)
        metrics.rate_limited(junk, "rpm")
    t = time.perf_counter()
    after = metrics.render()[0]
    took = time.perf_counter() - t
    # 30 statuses x (model other) x (group other) request series, one histogram pair for "other"
    assert len(after) - len(before) < 20_000, len(after) - len(before)
    assert len(metrics._req_children) < 200 and len(metrics._model_children) < 50
    assert took < 0.5


def test_deleted_channels_are_not_exported():
    h = ChannelHealth(failure_threshold=1, cooldown_s=10, clock=lambda: 0.0)
    metrics.set_health_provider(h.states)
    h.record_failure(11)
    h.record_failure(99)  # not in the catalog (deleted)
    s = scrape()
    assert val(s, "reapi_channel_open", channel="11") == 1.0
    assert val(s, "reapi_channel_open", channel="99") is None


async def test_refused_requests_with_invented_names_keep_metrics_small(gateway, upstream):
    # the defect: refused requests were labelled with the client's own model and group strings;
    # 80 such requests made /metrics 463 MB
    s = await gateway.setup(upstream, balance="0")
    headers = {"Authorization": f"Bearer {s['key']}"}
    _, _, before = await gateway.raw("GET", "/metrics")  # earlier tests of this process left series
    rnd = random.Random(2)
    sent = []
    for i in range(300):
        name = "z" + "".join(rnd.choices(string.ascii_letters + string.digits, k=rnd.randint(8, 2000)))
        sent.append(name)
        body = {"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]}
        if i % 3 == 0:
            body["model"] = name  # unknown model -> 404
        elif i % 3 == 1:
            body["group"] = name  # unknown group -> 400
        # else: known model and group, $0 balance -> 402
        st, _, _ = await gateway.raw("POST", "/v1/chat/completions", json=body, headers=headers)
        assert st in (400, 402, 404), st
    st, _, body = await gateway.raw("GET", "/metrics")
    assert st == 200
    text = body.decode()
    assert len(body) - len(before) < 10_000, len(body) - len(before)
    assert not any(name in text for name in sent)

    def requests_series(t: str) -> list:
        return [smp for f in text_string_to_metric_families(t) if f.name == "reapi_requests"
                for smp in f.samples if smp.name == "reapi_requests_total"]

    reqs = requests_series(text)
    assert len(reqs) - len(requests_series(before.decode())) <= 3, reqs
    by = {(smp.labels["model"], smp.labels["group"], smp.labels["status"]): smp.value for smp in reqs}
    assert by[("other", "default", "404")] >= 100
    assert by[("gpt-5.5", "other", "400")] >= 100
    assert by[("gpt-5.5", "default", "402")] >= 100


def test_registry_is_not_the_global_default():
    from prometheus_client import REGISTRY as DEFAULT
    assert metrics.REGISTRY is not DEFAULT
    names = {m.name for m in DEFAULT.collect()}
    assert not any(n.startswith("reapi_") for n in names)


def test_reapi_logs_reach_stderr_at_the_configured_level(tmp_path):
    # uvicorn configures only its own loggers; create_app must give reapi's a handler.
    import subprocess
    import sys

    code = ("import logging; from reapi.app import create_app; create_app(); "
            "logging.getLogger('reapi.requests').info('req_x refused 429'); "
            "logging.getLogger('reapi.limits').warning('redis down')")
    for level, expect_info in (("info", True), ("warning", False)):
        env = {"REAPI_DATABASE_URL": f"sqlite:///{tmp_path}/l.db", "REAPI_LOG_LEVEL": level, "PATH": "/usr/bin"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert ("INFO reapi[" in out.stderr and "req_x refused 429" in out.stderr) is expect_info, out.stderr
        assert "WARNING reapi[" in out.stderr and "reapi.limits: redis down" in out.stderr


async def test_a_large_scrape_does_not_stall_the_event_loop(gateway):
    # a large but legitimate catalog: 100 models x 5 groups x 12 statuses
    models, groups = [f"big-{i}" for i in range(100)], [f"bg{i}" for i in range(5)]
    learn(models, groups)
    for m in models:
        for g in groups:
            for st in (200, 400, 401, 402, 403, 404, 429, 499, 500, 502, 503, 504):
                metrics.observe_request(m, g, st, upstream_s=0.1, ttft_s=0.01, prompt_tokens=5, cost_nano=7)
    t = time.perf_counter()
    metrics.render()
    render_s = time.perf_counter() - t
    gaps = []

    async def ticker():
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    st, _, body = await gateway.raw("GET", "/metrics")
    scrape_gap = max(gaps)
    # the same render on the loop itself, under the same machine load: its gap is the whole render
    gaps.clear()
    await asyncio.sleep(0.01)
    metrics.render()
    await asyncio.sleep(0.01)
    on_loop_gap = max(gaps)
    tick.cancel()
    assert st == 200 and b'model="big-99"' in body
    assert b"_created" not in body  # no created-timestamp sample beside each series
    # rendered off the loop, the scrape's longest gap is well under a render on the loop
    assert scrape_gap < max(0.05, on_loop_gap * 0.9), (scrape_gap, on_loop_gap, render_s)


async def test_the_gateway_exports_its_event_loop_lag(gateway):
    def count(body: bytes) -> float:
        fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
        return next(s.value for s in fams["reapi_event_loop_lag_seconds"].samples if s.name.endswith("_count"))

    _, _, first = await gateway.raw("GET", "/metrics")
    await asyncio.sleep(0.2)
    _, _, later = await gateway.raw("GET", "/metrics")
    assert count(later) >= count(first) + 2  # a 25 ms timer, observed all along
