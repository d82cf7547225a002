"""CPU time and RSS of a server and its worker processes, read from /proc."""
from __future__ import annotations

import os
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def tree(pids: list[int]) -> list[int]:
    """The given processes and all their descendants (uvicorn workers, nginx workers)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], list(pids)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def by_name(names: tuple[str, ...]) -> list[int]:
    """Processes whose command name starts with one of `names` (postgres, redis-server)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                comm = (d / "comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith(names):
                out.append(int(d.name))
    return out if names else []


def cpu_seconds(pids: list[int], children: bool = True) -> float:
    total = 0
    for p in (tree(pids) if children else pids):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in ticks
    return total / TICK


def rss_mb(pids: list[int]) -> float:
    """Summed RSS of the tree, minus the `taskset` wrapper (which exec()s, so it is the server itself)."""
    total = 0
    for p in tree(pids):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024
