"""Stream client: N concurrent SSE streams, time to first token, gaps, stalls, integrity.

Each stream must deliver the upstream's 64 content chunks in order (tok0 .. tok63),
a usage chunk and `[DONE]` (Chat Completions), or 64 response.output_text.delta
events in order and response.completed with usage (Responses, api="responses");
anything else counts as broken. A stall is a gap of
more than 200 ms between two chunks (the upstream sends one every 20 ms). The
client's own event-loop lag is reported beside it: when the client itself falls
behind (1,000 streams on a core it shares with nginx), gaps are its own. `run_split` spreads the
streams over several client processes.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import aiohttp
import orjson

STALL_S = 0.2
EXPECTED = [f"tok{i} " for i in range(64)]


async def one(session: aiohttp.ClientSession, url: str, key: str, model: str, api: str = "chat") -> dict:
    if api == "responses":
        return await one_response(session, url, key, model)
    body = {"model": model, "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 256,
            "messages": [{"role": "user", "content": "Count to sixty-four."}]}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.perf_counter()
    ttft, last, max_gap, stalls = None, None, 0.0, 0
    content: list[str] = []
    usage = done = False
    async with session.post(url, json=body, headers=headers) as r:
        if r.status != 200:
            return {"ok": False, "ttft": None, "max_gap": 0.0, "stalls": 0, "span": None}
        async for line in r.content:
            if not line.startswith(b"data:"):
                continue
            now = time.perf_counter()
            if last is not None:
                gap = now - last
                max_gap = max(max_gap, gap)
                stalls += gap > STALL_S
            last = now
            data = line[5:].strip()
            if data == b"[DONE]":
                done = True
                continue
            # Byte scanning instead of a JSON parse per chunk: at 1,000 streams the client
            # must stay cheaper than the servers it measures (it shares a core with nginx).
            if b'"usage":{' in data:
                usage = orjson.loads(data).get("usage") is not None
            i = data.find(b'"content":"')
            if i >= 0:
                piece = data[i + 11:data.index(b'"', i + 11)]
                if piece:
                    if ttft is None:
                        ttft = now - started
                    content.append(piece.decode())
    return {"ok": done and usage and content == EXPECTED, "ttft": ttft, "max_gap": max_gap, "stalls": stalls,
            "span": (started + ttft, time.perf_counter()) if ttft is not None else None}



async def one_response(session: aiohttp.ClientSession, url: str, key: str, model: str) -> dict:
    """One Responses stream: deltas from response.output_text.delta, the end at response.completed (with usage)."""
    body = {"model": model, "stream": True, "max_output_tokens": 256, "input": "Count to sixty-four."}
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    started = time.perf_counter()
    ttft, last, max_gap, stalls = None, None, 0.0, 0
    content: list[str] = []
    usage = done = False
    async with session.post(url, json=body, headers=headers) as r:
        if r.status != 200:
            return {"ok": False, "ttft": None, "max_gap": 0.0, "stalls": 0, "span": None}
        async for line in r.content:
            if not line.startswith(b"data:"):
                continue
            now = time.perf_counter()
            if last is not None:
                gap = now - last
                max_gap = max(max_gap, gap)
                stalls += gap > STALL_S
            last = now
            data = line[5:].strip()
            if b'"response.output_text.delta"' in data:
                i = data.find(b'"delta":"')
                piece = data[i + 9:data.index(b'"', i + 9)]
                if ttft is None:
                    ttft = now - started
                content.append(piece.decode())
            elif b'"response.completed"' in data:
                done = True
                usage = orjson.loads(data)["response"].get("usage") is not None
    return {"ok": done and usage and content == EXPECTED, "ttft": ttft, "max_gap": max_gap, "stalls": stalls,
            "span": (started + ttft, time.perf_counter()) if ttft is not None else None}


_max_lag = 0.0


async def _loop_lag() -> None:
    """How late this client's own event loop wakes up: a gap the client caused itself
    (too busy reading other streams) is not the server's stall."""
    global _max_lag
    _max_lag = 0.0
    while True:
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        _max_lag = max(_max_lag, time.perf_counter() - t - 0.01)


def peak(spans: list[tuple[float, float]]) -> int:
    """The most streams delivering at one moment (first content chunk to end; CLOCK_MONOTONIC, so spans
    from several client processes compare)."""
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    top = now = 0
    for _, step in edges:
        now += step
        top = max(top, now)
    return top


def pct(vals: list[float], q: float) -> float:
    if not vals:
        return float("nan")
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(q * len(vals)))]


async def run(url: str, key: str, model: str, n: int, ramp_s: float = 1.0, sequential: int = 10,
              api: str = "chat", stall_s: float = 0.2) -> dict:
    """n concurrent streams opened over ramp_s seconds; n == 1 runs `sequential` streams
    one after another, so the single-stream TTFT is a median, not one sample."""
    global STALL_S
    STALL_S = stall_s  # a gap over this counts as a stall: 200 ms beyond the upstream's pace
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as s:
        async def guarded() -> dict:
            try:
                return await one(s, url, key, model, api)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                return {"ok": False, "ttft": None, "max_gap": 0.0, "stalls": 0, "span": None}

        async def delayed(i: int) -> dict:
            await asyncio.sleep(ramp_s * i / n)
            return await guarded()

        lag = asyncio.get_running_loop().create_task(_loop_lag())
        if n == 1:
            rows = [await guarded() for _ in range(sequential)]
        else:
            rows = await asyncio.gather(*(delayed(i) for i in range(n)))
        lag.cancel()
        try:
            await lag
        except asyncio.CancelledError:
            pass
    ttfts = [r["ttft"] * 1000 for r in rows if r["ttft"] is not None]
    return {"client_lag_ms": _max_lag * 1000, "streams": len(rows), "broken": sum(not r["ok"] for r in rows), "stalls": sum(r["stalls"] for r in rows),
            "ttft_p50_ms": pct(ttfts, 0.5), "ttft_p99_ms": pct(ttfts, 0.99),
            "max_gap_ms": max((r["max_gap"] for r in rows), default=0.0) * 1000, "ttfts_ms": ttfts,
            "spans": [r["span"] for r in rows if r["span"]], "peak_concurrent": peak([r["span"] for r in rows if r["span"]])}


def run_split(url: str, key: str, model: str, n: int, procs: int, ramp_s: float = 1.0, api: str = "chat",
              stall_s: float = 0.2) -> dict:
    """n concurrent streams spread over `procs` client processes (each its own event loop, started
    together, n/procs streams each over the same ramp), merged as one run: the client's lag is the worst
    of its processes'."""
    if procs <= 1 or n < procs:
        return asyncio.run(run(url, key, model, n, ramp_s=ramp_s, api=api, stall_s=stall_s))
    shares = [n // procs + (i < n % procs) for i in range(procs)]
    children = [subprocess.Popen([sys.executable, __file__, url, key, model, str(k), str(ramp_s), api, str(stall_s)],
                                 stdout=subprocess.PIPE, text=True) for k in shares]
    parts = [json.loads(c.communicate()[0]) for c in children]
    ttfts = [t for p in parts for t in p["ttfts_ms"]]
    spans = [tuple(sp) for p in parts for sp in p["spans"]]
    return {"client_lag_ms": max(p["client_lag_ms"] for p in parts), "streams": sum(p["streams"] for p in parts),
            "broken": sum(p["broken"] for p in parts), "stalls": sum(p["stalls"] for p in parts),
            "ttft_p50_ms": pct(ttfts, 0.5), "ttft_p99_ms": pct(ttfts, 0.99),
            "max_gap_ms": max(p["max_gap_ms"] for p in parts), "ttfts_ms": ttfts, "client_procs": procs,
            "spans": spans, "peak_concurrent": peak(spans)}


if __name__ == "__main__":  # one client process of run_split
    url, key, model, n, ramp, api, stall = sys.argv[1:8]
    print(json.dumps(asyncio.run(run(url, key, model, int(n), ramp_s=float(ramp), api=api, stall_s=float(stall)))))
