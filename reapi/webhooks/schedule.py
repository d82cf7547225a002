"""When a webhook delivery is tried again: the retry schedule (about 24 hours in all).

Attempt 1 is made as soon as the delivery is due (the task's terminal state). After a failed
attempt n the next one waits RETRY_DELAYS_S[n-1] seconds (plus up to 10% random jitter for the
delays of a minute or more, so a receiver that was down is not hit by every retry at once):

    5 s, 1 min, 5 min, 30 min, 2 h, 5 h, 8 h, 8 h   -> 9 attempts over about 23.6 hours

No attempt is due later than GIVE_UP_AFTER_S (24 h) after the delivery was created (a later one
is moved to that moment, so jitter never drops the last attempt); after the last attempt fails
the delivery is marked failed.
"""
from __future__ import annotations

import random

RETRY_DELAYS_S: tuple[float, ...] = (5, 60, 300, 1800, 7200, 18000, 28800, 28800)
GIVE_UP_AFTER_S = 24 * 3600


def next_attempt_ms(attempts: int, now_ms: int, created_ms: int, delays_s: tuple[float, ...] = RETRY_DELAYS_S,
                    give_up_after_s: float = GIVE_UP_AFTER_S, rng: random.Random | None = None) -> int | None:
    """When attempt `attempts + 1` is due after `attempts` failed ones; None: give up."""
    if attempts > len(delays_s):
        return None
    delay = delays_s[attempts - 1]
    if delay >= 60:
        delay += delay * 0.1 * (rng or random).random()
    deadline = created_ms + int(give_up_after_s * 1000)
    if now_ms >= deadline:
        return None
    return min(now_ms + int(delay * 1000), deadline)
