"""Huge prompts (issue #15, target 5): what a ~1M-token prompt adds to its own call, and whether ten of
them at once stall the short streams beside them.

    .venv/bin/python bench/huge.py [--runs 5] [--prompts 10] [--streams 20]

One `reapi serve` (SQLite, one worker, pinned to core 0) in front of the nginx upstream of bench/nginx.py
(core 1), a model `bench-huge` with a 1.1M-token window. The prompt is `--chars` of varied English
text (4 MB: ~694k o200k tokens; 5.8 MB: ~1.0M). Every huge request is sent by its own `curl` process
(core 1, nice 19), so the client's event loop never carries the uploads; the short streams run in this process, whose own loop lag is
reported beside their gaps (the upstream sends a chunk every 20 ms).

1. added: `--runs` different bodies through reapi and straight to nginx; reapi's median minus
   nginx's is the gateway's time for a prompt it has not seen (read, parse, count, hold, forward,
   settle). resent: one body again and again (an agent resending its history), whose count reapi kept.
2. beside: `--prompts` different huge calls at once while `--streams` short streams run through reapi:
   each stream's largest gap between chunks, how long the huge calls took, and how many of the
   server's own 25 ms timer wake-ups came over 25 / 50 ms late (reapi_event_loop_lag_seconds).
Not part of the test suite."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import looplag  # noqa: E402
import nginx  # noqa: E402
from bench import ADMIN_KEY, LOAD_CPU, PY, SERVER_CPU, Procs, admin, configure_reapi, wait_http  # noqa: E402

UPSTREAM_PORT, REAPI_PORT = 18950, 18951
WORDS = ("the quick brown fox jumps over lazy dog river mountain city light shadow number seven "
         "garden window silver market engine paper yellow ocean forest bridge winter summer").split()


def prompt_text(chars: int, seed: int = 7) -> str:
    rnd = random.Random(seed)
    out, n = [], 0
    while n < chars:
        sentence = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(6, 16))).capitalize() + ". "
        out.append(sentence)
        n += len(sentence)
    return "".join(out)[:chars]


def curl(url: str, body_file: Path, key: str | None) -> subprocess.Popen:
    cmd = ["taskset", "-c", LOAD_CPU, "nice", "-n", "19", "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}",
           "-H", "Content-Type: application/json", "--data-binary", f"@{body_file}", url]
    if key:
        cmd[-1:-1] = ["-H", f"Authorization: Bearer {key}"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def timed(url: str, body_file: Path, key: str | None) -> float:
    code, took = curl(url, body_file, key).communicate()[0].split()
    if code != "200":
        raise SystemExit(f"huge: {url} answered {code}")
    return float(took) * 1000


async def stream_gaps(base: str, key: str, n: int, stop: asyncio.Event) -> tuple[list[float], float]:
    """n short streams, one after another per slot, until `stop`: each stream's largest gap (ms), and
    this process's largest event-loop lag (ms)."""
    gaps: list[float] = []
    lag = 0.0

    async def watch_lag() -> None:
        nonlocal lag
        while not stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lag = max(lag, (time.perf_counter() - t - 0.005) * 1000)

    body = {"model": "bench-stream", "stream": True, "max_tokens": 256,
            "messages": [{"role": "user", "content": "Count to sixty-four."}]}

    async def slot(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            last, worst = None, 0.0
            async with session.post(base + "/v1/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {key}"}) as r:
                assert r.status == 200, r.status
                async for line in r.content:
                    now = time.perf_counter()
                    if line.startswith(b"data:"):
                        if last is not None:
                            worst = max(worst, now - last)
                        last = now
            gaps.append(worst * 1000)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(watch_lag(), *(slot(session) for _ in range(n)))
    return gaps, lag


async def beside(base: str, key: str, body_files: list[Path], streams: int) -> dict:
    stop = asyncio.Event()
    gaps_task = asyncio.create_task(stream_gaps(base, key, streams, stop))
    await asyncio.sleep(1.0)  # streams running before the huge calls start
    lags_before = looplag.scrape(base)
    t0 = time.perf_counter()
    procs = [curl(base + "/v1/chat/completions", f, key) for f in body_files]
    results = [(await asyncio.to_thread(p.communicate))[0].split() for p in procs]
    huge_s = time.perf_counter() - t0
    lags_after = looplag.scrape(base)
    await asyncio.sleep(1.5)  # the streams that overlapped the huge calls finish
    stop.set()
    gaps, lag = await gaps_task
    if any(code != "200" for code, _ in results):
        raise SystemExit(f"huge: beside run answered {[c for c, _ in results]}")
    return {"huge_calls_ms": [round(float(t) * 1000) for _, t in results], "all_huge_done_ms": round(huge_s * 1000),
            "streams": len(gaps), "max_gap_ms": round(max(gaps), 1),
            "p99_gap_ms": round(sorted(gaps)[int(len(gaps) * 0.99) - 1], 1),
            "client_loop_lag_ms": round(lag, 1),
            "server_loop_lags_over_25ms": looplag.over(lags_before, lags_after, 0.025),
            "server_loop_lags_over_50ms": looplag.over(lags_before, lags_after, 0.05),
            "server_worst_loop_lag": looplag.worst(lags_before, lags_after)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=10)
    ap.add_argument("--streams", type=int, default=20)
    ap.add_argument("--chars", type=int, default=4_000_000)
    args = ap.parse_args()
    os.sched_setaffinity(0, {int(LOAD_CPU)})
    work = Path(tempfile.mkdtemp(prefix="reapi-huge-"))
    procs = Procs()
    try:
        (work / "upstream.conf").write_text(nginx.upstream_conf(work, UPSTREAM_PORT))
        procs.start(["nginx", "-c", str(work / "upstream.conf"), "-p", str(work)], LOAD_CPU)
        env = {k: v for k, v in os.environ.items() if not k.startswith("REAPI_")}
        env.update(REAPI_DATABASE_URL=f"sqlite:///{work}/reapi.db", REAPI_ADMIN_KEY=ADMIN_KEY,
                   REAPI_LOG_LEVEL="warning", REAPI_TASK_WORKER="off")
        subprocess.run([PY, "-m", "reapi", "migrate"], env=env, check=True, capture_output=True)
        procs.start([PY, "-m", "reapi", "serve", "--port", str(REAPI_PORT)], SERVER_CPU, env, work / "reapi.log")
        base, upstream = f"http://127.0.0.1:{REAPI_PORT}", f"http://127.0.0.1:{UPSTREAM_PORT}"
        wait_http(base + "/healthz")
        key = configure_reapi(base, upstream)
        admin(base, "PUT", "/admin/models/bench-huge", {"input_usd_per_mtok": "1.25", "output_usd_per_mtok": "10",
                                                        "context_window": 1_100_000, "max_output_tokens": 1000})
        admin(base, "POST", "/admin/channels", {"name": "huge", "type": "openai", "base_url": f"{upstream}/fast/v1",
                                                "api_key": "sk-upstream-bench", "models": ["bench-huge"]})
        time.sleep(1.5)
        # Every body is a different text (reapi keeps the counts of long texts it has seen): the first
        # ones measure a prompt seen for the first time, the repeats of the first one a resent history.
        bodies = []
        for seed in range(1 + args.runs + args.prompts):
            bodies.append(work / f"huge-{seed}.json")
            bodies[-1].write_text(json.dumps({"model": "bench-huge", "max_tokens": 256, "messages": [
                {"role": "user", "content": prompt_text(args.chars, seed)}]}))
        warm, fresh, ten = bodies[0], bodies[1:1 + args.runs], bodies[1 + args.runs:]
        size_mb = warm.stat().st_size / 1e6
        timed(base + "/v1/chat/completions", warm, key)  # warm: vocabulary loaded, plans cached
        direct = [timed(upstream + "/fast/v1/chat/completions", f, None) for f in fresh]
        through = [timed(base + "/v1/chat/completions", f, key) for f in fresh]
        resent = [timed(base + "/v1/chat/completions", warm, key) for _ in range(args.runs)]
        from reapi.billing.tokens import count_prompt  # the count the hold is made of
        tokens = count_prompt(json.loads(warm.read_text()))
        out = {"body_mb": round(size_mb, 2), "prompt_tokens_counted": tokens,
               "direct_ms": round(statistics.median(direct), 1), "through_ms": round(statistics.median(through), 1),
               "added_ms_median": round(statistics.median(through) - statistics.median(direct), 1),
               "added_ms_max": round(max(through) - statistics.median(direct), 1),
               "resent_added_ms_median": round(statistics.median(resent) - statistics.median(direct), 1)}
        out["beside"] = asyncio.run(beside(base, key, ten, args.streams))
        print(json.dumps(out, indent=2))
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
