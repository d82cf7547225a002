"""bench/RESULTS.md from the benchmark's JSON report."""
from __future__ import annotations

from pathlib import Path


def _f(v, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def render(r: dict, names: dict[str, str]) -> str:
    m = r["machine"]
    a = r["args"]
    out = [
        "# Benchmark results", "",
        f"- date: {m['date']}; commit: `{m['commit']}`",
        f"- machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}",
        f"- upstream: {r['setup'].get('upstream')}; server under test pinned to core 0, upstream, wrk and the stream "
        "client on core 1 (PostgreSQL and Redis, for E, are not pinned)",
        f"- {a['rounds']} interleaved rounds; each run {a['seconds']} s after a discarded {a['warmup']} s warm-up; "
        "figures are medians over rounds; errors are summed",
        f"- reapi workers: {a['workers']}; CPU is the server's own (all its processes); store CPU is "
        "PostgreSQL's and Redis's during E's runs", "",
        "Configurations: " + "; ".join(f"**{k}** {v}" for k, v in names.items() if any(
            k in per for per in r["wrk"].values())), "",
        "## Requests (wrk)", "",
        "| case | config | RPS | p50 ms | p99 ms | added p50 ms | added p99 ms | CPU s / 1k req | store CPU s / 1k "
        "| RSS MB | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case, per in r["wrk"].items():
        base = per.get("A", {})
        for name, row in per.items():
            if not row["rps"]:  # nothing completed within the run: no latency to show
                out.append(f"| {case} | {name} | 0 | - | - | - | - | - | - | {_f(row['rss_mb'], '{:.0f}')} | "
                           f"no request completed in the run |")
                continue
            add50 = row["p50_ms"] - base["p50_ms"] if name != "A" and base else None
            add99 = row["p99_ms"] - base["p99_ms"] if name != "A" and base else None
            out.append(f"| {case} | {name} | {_f(row['rps'])} | {_f(row['p50_ms'], '{:.2f}')} | "
                       f"{_f(row['p99_ms'], '{:.2f}')} | {_f(add50, '{:+.2f}')} | {_f(add99, '{:+.2f}')} | "
                       f"{_f(row['cpu_s_per_1k'], '{:.3f}')} | {_f(row.get('store_cpu_s_per_1k'), '{:.3f}')} | "
                       f"{_f(row['rss_mb'], '{:.0f}')} | {row['errors']} |")
    if r.get("streams"):
        paced = r["args"].get("stream_variant") == "paced"
        pace = "250 ms apart (the paced upstream)" if paced else "20 ms apart"
        out += ["", f"## Streams (64 chunks {pace}, then usage and [DONE]; \"N responses\": the same through "
                "/v1/responses, ending with response.completed; client processes: "
                f"{r['args'].get('stream_procs', 1)})", "",
                "| streams | config | TTFT p50 ms | TTFT p99 ms | added TTFT p50 ms | max gap ms | stalls > 200 ms "
                "over the pace | broken | peak open | RSS MB | client loop lag ms | server loop lags > 250 ms "
                "(worst) |", "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for n, per in r["streams"].items():
            base = per.get("A", {})
            for name, row in per.items():
                add = row["ttft_p50_ms"] - base["ttft_p50_ms"] if name != "A" and base else None
                out.append(f"| {n} | {name} | {_f(row['ttft_p50_ms'], '{:.2f}')} | {_f(row['ttft_p99_ms'], '{:.2f}')} "
                           f"| {_f(add, '{:+.2f}')} | {_f(row['max_gap_ms'])} | {row['stalls']} | "
                           f"{row['broken']} of {row['streams']} | {row.get('peak_concurrent', '-')} | "
                           f"{_f(row['rss_mb'])} | {_f(row.get('client_lag_ms'))} | "
                           + (f"{row['server_lags_over_250ms']} ({row['server_worst_lag']})"
                              if "server_worst_lag" in row else "-") + " |")
    if r.get("soak"):
        s = r["soak"]
        out += ["", "## Soak (D, concurrency 64)", "",
                f"- {s['requests']} requests in {s['seconds']} s, {s['errors']} errors",
                f"- RSS {s['rss_after_warmup_mb']:.1f} MB after warm-up, {s['rss_end_mb']:.1f} MB at the end "
                f"({s['rss_growth_pct']:+.1f}%); samples every 10 s: {s['rss_samples_mb']}",
                f"- `reapi ledger verify` exit code {s['ledger_verify_rc']}: {' '.join(s['ledger_verify'])}"]
    if r.get("ledger_verify"):
        out += ["", "## Books after the run", ""]
        out += [f"- {name}: `reapi ledger verify` exit code {rc}: {line}" for name, (rc, line) in r["ledger_verify"].items()]
    out += ["", "## Targets", "", *targets(r), ""]
    analysis = Path(__file__).with_name("analysis.md")  # hand-written, kept next to the numbers
    if analysis.exists():
        out += [analysis.read_text().rstrip(), ""]
    return "\n".join(out) + "\n"


def targets(r: dict) -> list[str]:
    w = r["wrk"]
    rows = []

    def check(label: str, ok: bool, detail: str) -> None:
        rows.append(f"- {'met' if ok else 'MISSED'}: {label}: {detail}")

    c64 = w.get("fast@64", {})
    if "C" in c64 and "D" in c64:
        ratio = c64["D"]["rps"] / c64["C"]["rps"]
        check("D >= 50% of C at concurrency 64", ratio >= 0.5, f"{ratio:.0%}")
    if "C" in c64 and "E" in c64:
        ratio = c64["E"]["rps"] / c64["C"]["rps"]
        check("E >= 35% of C at concurrency 64", ratio >= 0.35, f"{ratio:.0%}")
    c512 = w.get("fast@512", {})
    if "D" in c512 and "D" in c64:
        ratio = c512["D"]["rps"] / c64["D"]["rps"]
        check("D at 512 >= 80% of D at 64, no errors", ratio >= 0.8 and c512["D"]["errors"] == 0,
              f"{ratio:.0%}, {c512['D']['errors']} errors")
    c1 = w.get("fast@1", {})
    if "A" in c1 and "D" in c1:
        a50 = c1["D"]["p50_ms"] - c1["A"]["p50_ms"]
        a99 = c1["D"]["p99_ms"] - c1["A"]["p99_ms"]
        check("concurrency 1 added latency <= +1 ms p50 and +2 ms p99", a50 <= 1 and a99 <= 2,
              f"{a50:+.2f} ms p50, {a99:+.2f} ms p99")
    s = r.get("streams") or {}
    if "1" in s and "D" in s["1"] and "A" in s["1"]:
        add = s["1"]["D"]["ttft_p50_ms"] - s["1"]["A"]["ttft_p50_ms"]
        check("streaming TTFT <= +1 ms p50 over A", add <= 1, f"{add:+.2f} ms")
    if "1000" in s and "D" in s["1000"]:
        d = s["1000"]["D"]
        a = s["1000"].get("A", {})
        check("1,000 concurrent streams: no stall, intact, RSS < 200 MB",
              d["stalls"] == 0 and d["broken"] == 0 and (d["rss_mb"] or 0) < 200,
              f"{d['stalls']} stalls, {d['broken']} broken, RSS {_f(d['rss_mb'])} MB (the client's own loop lagged up "
              f"to {_f(d.get('client_lag_ms'))} ms; straight to the upstream, A, it saw {a.get('stalls', '-')} stalls)")
    # issue #15 (round two)
    if "C" in c64 and "D" in c64:
        ratio = c64["D"]["rps"] / c64["C"]["rps"]
        check("#15: D >= 70% of C at concurrency 64", ratio >= 0.7, f"{ratio:.0%}")
    if "C" in c64 and "E" in c64:
        ratio = c64["E"]["rps"] / c64["C"]["rps"]
        check("#15: E >= 60% of C at concurrency 64", ratio >= 0.6, f"{ratio:.0%}")
    if "A" in c1 and "E" in c1:
        a50 = c1["E"]["p50_ms"] - c1["A"]["p50_ms"]
        check("#15: E added p50 at concurrency 1 <= +2 ms", a50 <= 2, f"{a50:+.2f} ms")
    if "A" in c1 and "D" in c1:
        a99 = c1["D"]["p99_ms"] - c1["A"]["p99_ms"]
        check("#15: D added p99 at concurrency 1 <= +2 ms", a99 <= 2, f"{a99:+.2f} ms")
    if "1" in s and "D" in s["1"] and "A" in s["1"]:
        add = s["1"]["D"]["ttft_p50_ms"] - s["1"]["A"]["ttft_p50_ms"]
        check("#15: D streaming TTFT <= +0.9 ms p50 over A", add <= 0.9, f"{add:+.2f} ms")
    if "5000" in s and "D" in s["5000"]:
        d = s["5000"]["D"]
        check("#15: 5,000 streams open at once, intact, no server loop lag over 250 ms, RSS < 400 MB",
              d["broken"] == 0 and d.get("peak_concurrent") == 5000 and d.get("server_lags_over_250ms") == 0
              and (d["rss_mb"] or 0) < 400,
              f"{d['broken']} broken, {d.get('peak_concurrent')} open at once, server loop lags over 250 ms "
              f"{d.get('server_lags_over_250ms')} (worst {d.get('server_worst_lag')}), RSS {_f(d['rss_mb'])} MB; "
              f"largest gap {_f(d['max_gap_ms'])} ms with the client's own loop lagging {_f(d.get('client_lag_ms'))} ms")
    # issue #16: /v1/responses within 10 % of /v1/chat/completions on the same upstream, same run
    for case, rcase in [(c, "r" + c) for c in w if not c.startswith("r") and "r" + c in w]:
        for name in [n for n in ("D", "E") if n in w[case] and n in w[rcase]]:
            chat, resp = w[case][name], w[rcase][name]
            base = w[case].get("A")
            ratio = resp["rps"] / chat["rps"] if chat["rps"] else 0
            add_c = chat["p50_ms"] - base["p50_ms"] if base else chat["p50_ms"]
            add_r = resp["p50_ms"] - (w[rcase]["A"]["p50_ms"] if "A" in w[rcase] else 0)
            check(f"{name} /v1/responses within 10% of chat, {case}", ratio >= 0.9 and add_r <= add_c * 1.1 + 0.05,
                  f"{ratio:.0%} of chat's RPS; added p50 {add_r:+.2f} ms vs chat's {add_c:+.2f} ms")
    for n in [k for k in s if not k.endswith("responses") and f"{k} responses" in s]:
        for name in [x for x in ("D", "E") if x in s[n] and x in s[f"{n} responses"]]:
            chat, resp = s[n][name], s[f"{n} responses"][name]
            add_c = chat["ttft_p50_ms"] - s[n]["A"]["ttft_p50_ms"] if "A" in s[n] else chat["ttft_p50_ms"]
            ra = s[f"{n} responses"].get("A")
            add_r = resp["ttft_p50_ms"] - ra["ttft_p50_ms"] if ra else resp["ttft_p50_ms"]
            check(f"{name} /v1/responses stream TTFT within 10% of chat, {n} streams",
                  add_r <= add_c * 1.1 + 0.05 and resp["broken"] == 0,
                  f"added TTFT {add_r:+.2f} ms vs chat's {add_c:+.2f} ms, {resp['broken']} broken")
    if r.get("soak"):
        so = r["soak"]
        check("soak: RSS growth < 10%, no error, ledger verify green",
              so["rss_growth_pct"] < 10 and so["errors"] == 0 and so["ledger_verify_rc"] == 0,
              f"{so['rss_growth_pct']:+.1f}%, {so['errors']} errors, verify rc {so['ledger_verify_rc']}")
    return rows
