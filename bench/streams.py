"""Stream client: N concurrent SSE streams, time to first token, gaps, stalls, integrity.

Each stream must deliver the upstream's 64 content chunks in order (tok0 .. tok63),
a usage chunk and `[DONE]` (Chat Completions), or 64 response.output_text.delta
events in order and response.completed with usage (Responses, api="responses");
anything else counts as broken. A stall is a gap of
more than 200 ms between two chunks (the upstream sends one every 20 ms). The
client's own event-loop lag is reported beside it: when the client itself falls
behind (1,000 streams on a core it shares with nginx), gaps are its own.
"""
from __future__ import annotations

import asyncio
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
            return {"ok": False, "ttft": None, "max_gap": 0.0, "stalls": 0}
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
    return {"ok": done and usage and content == EXPECTED, "ttft": ttft, "max_gap": max_gap, "stalls": stalls}



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
            return {"ok": False, "ttft": None, "max_gap": 0.0, "stalls": 0}
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
    return {"ok": done and usage and content == EXPECTED, "ttft": ttft, "max_gap": max_gap, "stalls": stalls}


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


def pct(vals: list[float], q: float) -> float:
    if not vals:
        return float("nan")
    vals = sorted(vals)
    return vals[min(len(vals) - 1, int(q * len(vals)))]


async def run(url: str, key: str, model: str, n: int, ramp_s: float = 1.0, sequential: int = 10,
              api: str = "chat") -> dict:
    """n concurrent streams opened over ramp_s seconds; n == 1 runs `sequential` streams
    one after another, so the single-stream TTFT is a median, not one sample."""
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as s:
        async def guarded() -> dict:
            try:
                return await one(s, url, key, model, api)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                return {"ok": False, "ttft": None, "max_gap": 0.0, "stalls": 0}

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
            "max_gap_ms": max((r["max_gap"] for r in rows), default=0.0) * 1000}
