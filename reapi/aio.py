"""asyncio helpers that stay correct on Python 3.11.

`asyncio.wait_for` on 3.11 loses a cancellation that arrives in the same loop iteration as the
awaited thing finishing (CPython gh-86296, fixed in 3.12): a loop parked in
`wait_for(event.wait(), t)` whose event is set just as its owner cancels it keeps running, and the
owner's `await task` never returns. `asyncio.timeout` has no such race, so every bounded wait in
reapi goes through it. Libraries still hit it: redis-py 8 wraps each socket write in `wait_for`
when a socket timeout is set, so a loop cancelled mid-command may carry on; `stop_tasks` cancels
again until it ends. `watch_lag` measures how late the loop runs a timer (what every
request waiting on it feels); `nice_thread` lowers a worker thread's CPU priority, so the loop's
thread takes a shared core first. Imports nothing from reapi.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Callable

log = logging.getLogger("reapi")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it was set. A cancellation always
    propagates."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def stop_tasks(*tasks: asyncio.Task | None, wait_s: float = 0.5, tries: int = 10) -> None:
    """Cancel `tasks` and wait until they end. A task whose cancellation was lost (see above) is
    cancelled again every `wait_s` seconds, up to `tries` times; one still running after that is left
    behind with a warning, so a shutdown always ends in bounded time."""
    given = [t for t in tasks if t is not None]
    running = {t for t in given if not t.done()}
    for _ in range(tries):
        if not running:
            break
        for t in running:
            t.cancel()
        _, running = await asyncio.wait(running, timeout=wait_s)
    for t in given:
        if t in running:
            log.warning("task %s did not stop when cancelled; left behind", t.get_name())
        elif not t.cancelled():
            t.exception()  # retrieved: a loop's last error was logged by the loop itself


async def watch_lag(record: Callable[[float], None], interval: float = 0.025) -> None:
    """Forever: sleep `interval` seconds and `record` how much later than asked the loop woke. A lag
    is time the loop spent on something else (a long callback, a held GIL) while timers and sockets
    waited."""
    loop = asyncio.get_running_loop()
    while True:
        asked = loop.time() + interval
        await asyncio.sleep(interval)
        record(max(0.0, loop.time() - asked))


def nice_thread(nice: int) -> None:
    """Give the calling thread (only it: Linux per-thread nice) the CPU priority `nice`; a
    ThreadPoolExecutor initializer. Not Linux, or not allowed: left as it is."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass
