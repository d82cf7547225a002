"""Channel selection: the highest-priority tier first, weighted random within a tier."""
from __future__ import annotations

import random
from typing import Callable

from reapi.catalog import Channel


def pick(tiers: list[list[Channel]], available: Callable[[int], bool] | None = None,
         rng: random.Random | None = None) -> Channel | None:
    """Choose one channel. Channels that `available` rules out (cooling down after failures)
    are skipped; if every channel is out, the top tier is used anyway, since refusing
    outright would turn one flaky upstream into a full outage."""
    if not tiers:
        return None
    choose = (rng or random).choices
    for tier in tiers:
        candidates = list(tier)
        while candidates:
            # Ask `available` only about the channel we would use: asking may take a
            # half-open channel's single probe slot.
            ch = candidates[0] if len(candidates) == 1 else choose(candidates, [c.weight for c in candidates])[0]
            if available is None or available(ch.id):
                return ch
            candidates.remove(ch)
    top = tiers[0]
    return top[0] if len(top) == 1 else choose(top, [c.weight for c in top])[0]
