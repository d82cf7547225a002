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
        candidates = tier if available is None else [c for c in tier if available(c.id)]
        if candidates:
            return candidates[0] if len(candidates) == 1 else choose(candidates, [c.weight for c in candidates])[0]
    top = tiers[0]
    return top[0] if len(top) == 1 else choose(top, [c.weight for c in top])[0]
