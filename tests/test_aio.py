"""reapi.aio: bounded waits that never lose a cancellation, and shutdowns that always end.

The last CI run hung for over 80 minutes in ChannelHealth.stop(): asyncio.wait_for (ours around the
sync loop's wake event, and redis-py's around each socket write) swallowed the stop's cancellation on
Python 3.11, and the sync loop ran on while stop() awaited it forever."""
import asyncio
import logging
import time

from reapi.aio import stop_tasks, wait_event, watch_lag
from reapi.relay.health import ChannelHealth
from tests.relay.test_health import REDIS_URL, prefix  # noqa: F401 (the fixture: fresh keys, removed after)


async def test_wait_event_set_and_cancelled_in_one_iteration_still_cancels():
    ev = asyncio.Event()
    waiter = asyncio.create_task(wait_event(ev, 30))
    await asyncio.sleep(0)  # parked in the wait
    ev.set()
    waiter.cancel()  # same loop iteration: asyncio.wait_for on 3.11 would return True here
    done, _ = await asyncio.wait({waiter}, timeout=2)
    assert done and waiter.cancelled()


async def test_wait_event_times_out_or_sees_the_event():
    ev = asyncio.Event()
    assert await wait_event(ev, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, ev.set)
    assert await wait_event(ev, 5) is True


async def test_stop_tasks_cancels_again_a_task_that_swallowed_the_first_cancel():
    swallowed = []

    async def stubborn():
        while True:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed.append(1)  # what a lost cancellation looks like from outside

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await stop_tasks(task, wait_s=0.05)
    assert swallowed == [1] and task.cancelled()


async def test_stop_tasks_gives_up_on_a_task_that_never_ends(caplog):
    release = asyncio.Event()

    async def deaf():
        while not release.is_set():
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass

    task = asyncio.create_task(deaf(), name="deaf-loop")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="reapi"):
        async with asyncio.timeout(5):
            await stop_tasks(task, wait_s=0.02, tries=3)
    assert not task.done()
    assert any("deaf-loop" in r.getMessage() for r in caplog.records)
    release.set()
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    assert task.done()


async def test_channel_health_stops_right_after_a_transition(prefix):
    """The hang itself: a transition wakes the sync loop (a write to Redis starts) and stop() follows
    at once. Fresh keys every round: the first push of a channel is the write that lost the cancel."""
    for i in range(5):
        h = ChannelHealth(redis_url=REDIS_URL, prefix=f"{prefix}{i}:", sync_interval_s=0.05)
        await h.start()
        await asyncio.sleep(0.02)
        for _ in range(3):
            h.record_failure(1)
        stopping = asyncio.create_task(h.stop())  # as a server's shutdown does: from another task
        done, _ = await asyncio.wait({stopping}, timeout=8)
        assert done, f"round {i}: ChannelHealth.stop() did not return"
        assert h._task is None


async def test_watch_lag_records_how_late_a_blocked_loop_woke():
    lags: list[float] = []
    watcher = asyncio.create_task(watch_lag(lags.append, 0.01))
    await asyncio.sleep(0.05)
    time.sleep(0.15)  # a callback that holds the loop
    await asyncio.sleep(0.05)
    await stop_tasks(watcher)
    assert len(lags) >= 3 and min(lags) >= 0.0
    assert max(lags) >= 0.1, lags
