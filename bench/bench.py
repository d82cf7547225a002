"""The reapi benchmark: configurations A-E under wrk, interleaved round by round.

Run it with `./bench/run` (see bench/README.md). Core 0 runs the server under
test; core 1 runs the nginx upstream, wrk and the stream client. Each
measurement is preceded by a discarded warm-up; the reported figure is the
median over rounds.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import looplag  # noqa: E402
import nginx  # noqa: E402
import procstat  # noqa: E402
import streams  # noqa: E402

PY = sys.executable
ADMIN_KEY = "bench-admin-key"
SERVER_CPU = "0"
LOAD_CPU = "1"
_BASE = int(os.environ.get("BENCH_PORT_BASE", "18090"))  # move it when two benches share a machine
PORTS = {"upstream": _BASE, "B": _BASE + 1, "C": _BASE + 2, "D": _BASE + 3, "E": _BASE + 4, "L": _BASE + 5}
PG_ADMIN = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/15")
NAMES = {"A": "direct to upstream", "B": "nginx proxy_pass", "C": "bare Python forwarder",
         "D": "reapi, SQLite", "E": "reapi, PostgreSQL + Redis", "L": "LiteLLM Proxy"}


@dataclass
class Target:
    name: str
    base: str  # scheme://host:port
    key: str = ""
    pids: list[int] = field(default_factory=list)  # server processes whose CPU and RSS we count
    stores: tuple[str, ...] = ()  # process names of the services it uses (E: PostgreSQL, Redis)

    def url(self, variant: str) -> str:
        """A variant is fast, slow or stream (Chat Completions) or rfast, rslow or rstream (the same upstream
        answers through the Responses API, /v1/responses)."""
        upstream, route = upstream_variant(variant)
        if self.name in ("A", "B", "C"):
            return f"{self.base}/{upstream}/v1/{route}"
        return f"{self.base}/v1/{route}"

    def model(self, variant: str) -> str:
        return f"bench-{upstream_variant(variant)[0]}"


def upstream_variant(variant: str) -> tuple[str, str]:
    """(the upstream's prefix, the API route) of a case's variant."""
    if variant.startswith("r"):
        return variant[1:], "responses"
    return variant, "chat/completions"


class Procs:
    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], cpu: str, env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
        out = open(log, "ab") if log else subprocess.DEVNULL
        p = subprocess.Popen(["taskset", "-c", cpu, *args], env=env, stdout=out, stderr=out,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: {url} did not come up")


def admin(base: str, method: str, path: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read() or b"{}")


def configure_reapi(base: str, upstream: str) -> str:
    """Everything on: priced models, a channel per variant, group rate limits, a funded account and a key."""
    for variant in ("fast", "slow", "stream", "paced"):
        admin(base, "PUT", f"/admin/models/bench-{variant}", {
            "input_usd_per_mtok": "1.25", "output_usd_per_mtok": "10", "context_window": 400000,
            "max_output_tokens": 1000})
        admin(base, "POST", "/admin/channels", {"name": variant, "type": "openai", "base_url": f"{upstream}/{variant}/v1",
                                                "api_key": "sk-upstream-bench", "models": [f"bench-{variant}"]})
    # Limits are on (and consulted on every request) but set high enough never to refuse.
    admin(base, "PUT", "/admin/groups/default", {"rpm": 100_000_000, "tpm": 2_000_000_000,
                                                  "total_rpm": 100_000_000, "total_tpm": 2_000_000_000})
    acc = admin(base, "POST", "/admin/accounts", {"name": "bench"})
    admin(base, "POST", f"/admin/accounts/{acc['id']}/credits", {"amount_usd": "1000000"})
    return admin(base, "POST", f"/admin/accounts/{acc['id']}/keys", {"name": "bench"})["key"]


def create_pg_database() -> str:
    name = f"reapi_bench_{os.getpid()}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f'DROP DATABASE IF EXISTS "{name}"'], check=True, capture_output=True)
    subprocess.run(["psql", PG_ADMIN, "-qc", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def reapi_env(db: str, redis: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REAPI_")}
    env.update(REAPI_DATABASE_URL=db, REAPI_ADMIN_KEY=ADMIN_KEY, REAPI_LOG_LEVEL="warning")
    if redis:
        env["REAPI_REDIS_URL"] = redis
    return env


def start_all(args, procs: Procs, work: Path) -> tuple[dict[str, Target], dict]:
    targets: dict[str, Target] = {}
    info: dict = {}
    up = f"http://127.0.0.1:{PORTS['upstream']}"
    if shutil.which("nginx") and Path(nginx.ECHO_MODULE).exists():
        (work / "upstream.conf").write_text(nginx.upstream_conf(work, PORTS["upstream"]))
        procs.start(["nginx", "-c", str(work / "upstream.conf"), "-p", str(work)], LOAD_CPU)
        info["upstream"] = "nginx + echo module"
    else:
        procs.start([PY, "-m", "reapi", "mock-upstream", "--port", str(PORTS["upstream"])], LOAD_CPU)
        info["upstream"] = "reapi mock-upstream (nginx with the echo module is missing)"
    wait_http(up + "/")
    targets["A"] = Target("A", up)
    if "B" in args.configs and shutil.which("nginx"):
        (work / "proxy.conf").write_text(nginx.proxy_conf(work, PORTS["B"], PORTS["upstream"]))
        p = procs.start(["nginx", "-c", str(work / "proxy.conf"), "-p", str(work)], SERVER_CPU)
        targets["B"] = Target("B", f"http://127.0.0.1:{PORTS['B']}", pids=[p.pid])
    if "C" in args.configs:
        env = {**os.environ, "BENCH_UPSTREAM": up, "PYTHONPATH": str(ROOT)}
        p = procs.start([PY, "-m", "uvicorn", "bench.forwarder:app", "--port", str(PORTS["C"]), "--loop", "uvloop",
                         "--http", "httptools", "--no-access-log", "--log-level", "warning"], SERVER_CPU, env,
                        work / "forwarder.log")
        targets["C"] = Target("C", f"http://127.0.0.1:{PORTS['C']}", pids=[p.pid])
    if "D" in args.configs:
        db = f"sqlite:///{work}/bench.db"
        targets["D"] = start_reapi("D", procs, reapi_env(db, None), work, up, args.workers)
        info["D_database"] = db
    if "E" in args.configs:
        db = create_pg_database()
        targets["E"] = start_reapi("E", procs, reapi_env(db, REDIS), work, up, args.workers)
        targets["E"].stores = ("postgres", "redis-server")
        info["E_database"] = db
    if "L" in args.configs:
        targets["L"] = start_litellm(procs, work, up)
    for t in targets.values():
        wait_http(t.base + "/")
    return targets, info


def start_reapi(name: str, procs: Procs, env: dict, work: Path, upstream: str, workers: int) -> Target:
    port = PORTS[name]
    # One worker is pinned to the server's core; several are not pinned (issue #15: "server not pinned"),
    # the load generator stays on its core.
    cpu = SERVER_CPU if workers == 1 else "0-1"
    p = procs.start([PY, "-m", "reapi", "serve", "--port", str(port), "--workers", str(workers)], cpu, env,
                    work / f"reapi-{name}.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz")
    key = configure_reapi(base, upstream)
    time.sleep(1.5)  # every worker's catalog picks the new config up
    return Target(name, base, key, pids=[p.pid])


def start_litellm(procs: Procs, work: Path, upstream: str) -> Target:
    venv = BENCH / ".venv-litellm"
    if not (venv / "bin" / "litellm").exists():
        subprocess.run([PY, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"], check=True)
    models = [{"model_name": f"bench-{v}", "litellm_params": {"model": f"openai/bench-{v}",
                                                              "api_base": f"{upstream}/{v}/v1",
                                                              "api_key": "sk-upstream-bench"}}
              for v in ("fast", "slow", "stream")]
    (work / "litellm.yaml").write_text(json.dumps({"model_list": models}))  # JSON is YAML
    key = "sk-bench-litellm-" + os.urandom(12).hex()  # it refuses to start without a strong master key
    env = {**os.environ, "LITELLM_MASTER_KEY": key, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # offline
    p = procs.start([str(venv / "bin" / "litellm"), "--config", str(work / "litellm.yaml"), "--port",
                     str(PORTS["L"]), "--num_workers", "1"], SERVER_CPU, env, work / "litellm.log")
    wait_http(f"http://127.0.0.1:{PORTS['L']}/health/liveliness", timeout=180)
    return Target("L", f"http://127.0.0.1:{PORTS['L']}", key, pids=[p.pid])


def body_for(t: Target, variant: str) -> str:
    if variant.startswith("r"):  # the same prompt as a Responses request (store left to its default)
        return json.dumps({"model": t.model(variant), "max_output_tokens": 256,
                           "instructions": "You are a terse assistant.",
                           "input": "Write two sentences about foxes and dogs."})
    return json.dumps({"model": t.model(variant), "max_tokens": 256,
                       "messages": [{"role": "system", "content": "You are a terse assistant."},
                                    {"role": "user", "content": "Write two sentences about foxes and dogs."}]})


def wrk(t: Target, variant: str, conns: int, seconds: float) -> dict:
    env = {**os.environ, "BENCH_BODY": body_for(t, variant), "BENCH_KEY": t.key}
    threads = 1 if conns < 64 else 2
    cmd = ["taskset", "-c", LOAD_CPU, "wrk", f"-t{threads}", f"-c{conns}", f"-d{int(seconds)}s", "--timeout", "10s",
           "-s", str(BENCH / "post.lua"), t.url(variant)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60).stdout
    for line in out.splitlines():
        if line.startswith("BENCH "):
            return json.loads(line[6:])
    raise SystemExit(f"bench: wrk printed no summary:\n{out}")


def measure(t: Target, variant: str, conns: int, seconds: float, warmup: float) -> dict:
    if warmup:
        wrk(t, variant, conns, warmup)
    store_pids = procstat.by_name(t.stores)
    before, store_before = procstat.cpu_seconds(t.pids), procstat.cpu_seconds(store_pids, children=False)
    r = wrk(t, variant, conns, seconds)
    cpu = procstat.cpu_seconds(t.pids) - before if t.pids else None
    store_cpu = procstat.cpu_seconds(store_pids, children=False) - store_before if store_pids else None
    errors = r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000, "errors": errors, "requests": r["requests"],
            "cpu_s_per_1k": (cpu / r["requests"] * 1000) if cpu is not None and r["requests"] else None,
            "store_cpu_s_per_1k": (store_cpu / r["requests"] * 1000) if store_cpu is not None and r["requests"]
            else None,
            "rss_mb": procstat.rss_mb(t.pids) if t.pids else None}


def median_of(rows: list[dict], key: str):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def run_rounds(args, targets: dict[str, Target]) -> dict:
    results: dict = {}  # (variant, conns) -> config -> [rows]
    order = [c for c in "ABCDEL" if c in targets and (c == "A" or c in args.configs)]
    for rnd in range(args.rounds):
        for variant, conns in args.cases:
            for name in order:
                row = measure(targets[name], variant, conns, args.seconds, args.warmup)
                results.setdefault(f"{variant}@{conns}", {}).setdefault(name, []).append(row)
                print(f"round {rnd + 1} {variant:5s} c={conns:<4d} {name}: {row['rps']:8.0f} rps  "
                      f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  errors {row['errors']}", flush=True)
    summary = {}
    for case, per in results.items():
        summary[case] = {}
        for name, rows in per.items():
            summary[case][name] = {k: median_of(rows, k) for k in ("rps", "p50_ms", "p99_ms", "cpu_s_per_1k",
                                                                   "store_cpu_s_per_1k", "rss_mb")}
            summary[case][name]["errors"] = sum(r["errors"] for r in rows)
    return summary


def run_streams(args, targets: dict[str, Target]) -> dict:
    out: dict = {}
    order = [c for c in "ABCDEL" if c in targets and (c == "A" or c in args.configs)]
    for rnd in range(args.rounds):
        for n, api in [(n, api) for n in args.stream_counts for api in args.stream_apis]:
            for name in order:
                t = targets[name]
                variant = args.stream_variant if api == "chat" else "rstream"
                lags = looplag.scrape(t.base) if name in "DE" else None
                pace = nginx.PACED_INTERVAL_S if variant == "paced" else 0.0  # stalls: 200 ms beyond the pace
                res = streams.run_split(t.url(variant), t.key, t.model(variant), n, args.stream_procs,
                                        ramp_s=args.stream_ramp, api=api, stall_s=pace + 0.2)
                res.pop("ttfts_ms")
                res.pop("spans")
                if lags is not None:  # the server's own loop: wake-ups late by over 250 ms (a stall it caused)
                    after = looplag.scrape(t.base)
                    res["server_lags_over_250ms"] = looplag.over(lags, after, 0.25)
                    res["server_worst_lag"] = looplag.worst(lags, after)
                if t.pids:
                    res["rss_mb"] = procstat.rss_mb(t.pids)
                key = str(n) if api == "chat" else f"{n} responses"
                out.setdefault(key, {}).setdefault(name, []).append(res)
                print(f"round {rnd + 1} streams n={n:<5d} {api:9s} {name}: ttft p50 {res['ttft_p50_ms']:.2f} ms "
                      f"p99 {res['ttft_p99_ms']:.2f} ms stalls {res['stalls']} broken {res['broken']} "
                      f"max gap {res['max_gap_ms']:.0f} ms client lag {res['client_lag_ms']:.0f} ms "
                      f"peak concurrent {res['peak_concurrent']}"
                      + (f" server lags over 250 ms {res['server_lags_over_250ms']} (worst {res['server_worst_lag']})"
                         if "server_worst_lag" in res else ""), flush=True)
    summary = {}
    for n, per in out.items():
        summary[n] = {}
        for name, rows in per.items():
            summary[n][name] = {k: median_of(rows, k) for k in ("ttft_p50_ms", "ttft_p99_ms", "max_gap_ms", "rss_mb",
                                                                "client_lag_ms")}
            summary[n][name]["stalls"] = sum(r["stalls"] for r in rows)
            summary[n][name]["broken"] = sum(r["broken"] for r in rows)
            summary[n][name]["streams"] = sum(r["streams"] for r in rows)
            summary[n][name]["peak_concurrent"] = min(r["peak_concurrent"] for r in rows)
            if "server_worst_lag" in rows[0]:
                summary[n][name]["server_lags_over_250ms"] = sum(r["server_lags_over_250ms"] for r in rows)
                summary[n][name]["server_worst_lag"] = max((r["server_worst_lag"] for r in rows),
                                                           key=lambda w: float(w.split(", ")[1].split("]")[0]))
    return summary


def soak(args, t: Target, work: Path) -> dict:
    """A long run on D: RSS after warm-up vs at the end, errors, then `reapi ledger verify`."""
    wrk(t, "fast", 64, 5)
    rss_start = procstat.rss_mb(t.pids)
    total, errors, samples = 0, 0, []
    started = time.monotonic()
    while total < args.soak:
        r = wrk(t, "fast", 64, 10)
        total += r["requests"]
        errors += r["non2xx"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
        samples.append(round(procstat.rss_mb(t.pids), 1))
    elapsed = time.monotonic() - started
    time.sleep(1)
    verify = subprocess.run([PY, "-m", "reapi", "ledger", "verify"], capture_output=True, text=True,
                            env=reapi_env(f"sqlite:///{work}/bench.db", None))
    rss_end = procstat.rss_mb(t.pids)
    return {"requests": total, "seconds": round(elapsed, 1), "errors": errors, "rss_after_warmup_mb": rss_start,
            "rss_end_mb": rss_end, "rss_growth_pct": (rss_end - rss_start) / rss_start * 100,
            "rss_samples_mb": samples, "ledger_verify_rc": verify.returncode,
            "ledger_verify": verify.stdout.strip().splitlines()[-1:] }


def ledger_verify(info: dict) -> dict:
    """`reapi ledger verify` on each reapi store once the load is over: {config: [exit code, last line]}."""
    out = {}
    for name in ("D", "E"):
        db = info.get(f"{name}_database")
        if db:
            time.sleep(1)  # the last settlements of the run are written
            v = subprocess.run([PY, "-m", "reapi", "ledger", "verify"], capture_output=True, text=True,
                               env=reapi_env(db, None))
            out[name] = [v.returncode, (v.stdout.strip().splitlines() or [""])[-1]]
    return out


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "commit": commit + ("+dirty" if dirty else ""),
            "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}


def parse_args(argv: list[str] | None = None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="ABCDE", help="which of A B C D E L to run (A always runs; L = LiteLLM)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5, help="length of each measured wrk run")
    ap.add_argument("--warmup", type=int, default=1, help="discarded run before each measurement")
    ap.add_argument("--cases", default="fast@1,fast@64,fast@512,slow@64",
                    help="variant@connections list; variants: fast, slow (20 ms upstream); rfast, rslow: the "
                         "same through /v1/responses")
    ap.add_argument("--streams", default="1,64,1000", help="concurrent stream counts ('' to skip)")
    ap.add_argument("--stream-apis", default="chat", help="chat, responses or chat,responses")
    ap.add_argument("--stream-ramp", type=float, default=1.0, help="seconds over which streams are opened")
    ap.add_argument("--stream-procs", type=int, default=1, help="client processes the streams are spread over")
    ap.add_argument("--stream-variant", default="stream", choices=("stream", "paced"),
                    help="chat streams' pace: a chunk every 20 ms (stream) or 250 ms (paced, 16 s long)")
    ap.add_argument("--soak", type=int, default=0, help="requests for the soak run on D (0 skips; issue: 200000)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--out", default=str(BENCH / "RESULTS.md"))
    ap.add_argument("--json", default=str(BENCH / "results.json"))
    args = ap.parse_args(argv)
    args.cases = [(c.split("@")[0], int(c.split("@")[1])) for c in args.cases.split(",") if c]
    args.stream_counts = [int(n) for n in args.streams.split(",") if n]
    args.stream_apis = [a for a in args.stream_apis.split(",") if a]
    if not set(args.stream_apis) <= {"chat", "responses"}:
        ap.error("--stream-apis takes chat and/or responses")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.sched_setaffinity(0, {int(LOAD_CPU)})  # the orchestrator and stream client stay off the server's core
    procs = Procs()
    work = Path(tempfile.mkdtemp(prefix="reapi-bench-"))
    try:
        targets, info = start_all(args, procs, work)
        report = {"machine": machine(), "setup": info, "args": {k: v for k, v in vars(args).items()},
                  "wrk": run_rounds(args, targets)}
        if args.stream_counts:
            report["streams"] = run_streams(args, targets)
        if args.soak and "D" in targets:
            report["soak"] = soak(args, targets["D"], work)
            print("soak:", json.dumps(report["soak"]), flush=True)
        report["ledger_verify"] = ledger_verify(info)
    finally:
        procs.stop()
        if "E_database" in locals().get("info", {}):
            subprocess.run(["psql", PG_ADMIN, "-qc", f'DROP DATABASE IF EXISTS "{info["E_database"].rsplit("/", 1)[1]}"'],
                           capture_output=True)
    Path(args.json).write_text(json.dumps(report, indent=1, default=str))
    import report as report_md
    Path(args.out).write_text(report_md.render(report, NAMES))
    print(f"wrote {args.out} and {args.json}")


if __name__ == "__main__":
    main()
