"""RSS of one `reapi serve` worker (issue #15, target 6): after start, then with every wing loaded
(one request each to the console, the site, the operator console, the task gateway, Responses and
Anthropic's routes), then after a short burst of chat calls.

    .venv/bin/python bench/memory.py

SQLite, task worker on (as `reapi serve` runs by default), the reapi mock upstream. Not part of the
test suite."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import ADMIN_KEY, PY, Procs, configure_reapi, wait_http  # noqa: E402

PORT, UPSTREAM = 18961, 18960


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get(url: str, data: dict | None = None, key: str | None = None) -> int:
    req = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="reapi-mem-"))
    procs = Procs()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REAPI_")}
        env.update(REAPI_DATABASE_URL=f"sqlite:///{work}/reapi.db", REAPI_ADMIN_KEY=ADMIN_KEY, REAPI_LOG_LEVEL="warning")
        subprocess.run([PY, "-m", "reapi", "migrate"], env=env, check=True, capture_output=True)
        procs.start([PY, "-m", "reapi", "mock-upstream", "--port", str(UPSTREAM)], "0-1")
        server = procs.start([PY, "-m", "reapi", "serve", "--port", str(PORT)], "0-1", env, work / "reapi.log")
        base = f"http://127.0.0.1:{PORT}"
        wait_http(base + "/healthz")
        wait_http(f"http://127.0.0.1:{UPSTREAM}/", 30)
        time.sleep(2)
        pid = server.pid  # taskset execs reapi; one worker serves in that process
        out = {"after_start_mb": round(rss_mb(pid), 1)}
        key = configure_reapi(base, f"http://127.0.0.1:{UPSTREAM}")
        for path, body in (("/console", None), ("/login", None), ("/", None), ("/pricing", None), ("/docs", None),
                           ("/docs/bench-fast", None), ("/openapi.json", None), ("/admin/console", None),
                           ("/api/v1/models", None), ("/v1/models", None),
                           ("/v1/responses", {"model": "bench-fast", "input": "hi"}),
                           ("/v1/messages", {"model": "bench-fast", "max_tokens": 16,
                                             "messages": [{"role": "user", "content": "hi"}]})):
            get(base + path, body, key if path.startswith("/v1") else None)
        out["every_wing_loaded_mb"] = round(rss_mb(pid), 1)
        for _ in range(500):
            get(base + "/v1/chat/completions", {"model": "bench-fast", "max_tokens": 16,
                                                "messages": [{"role": "user", "content": "hi"}]}, key)
        out["after_500_calls_mb"] = round(rss_mb(pid), 1)
        print(json.dumps(out, indent=2))
    finally:
        procs.stop()


if __name__ == "__main__":
    main()
