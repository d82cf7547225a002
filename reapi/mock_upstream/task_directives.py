"""The bracket directives of the task mocks (ark, images, reapi_tasks): `[ark steps=3 fail]` in a prompt.
Each mock has its own bracket word; reading the brackets and their numbers is the same for all. Imports
nothing of the package.
"""
from __future__ import annotations

import re


def read_directives(pattern: re.Pattern[str], text: str) -> dict[str, str]:
    """Every `key` or `key=value` inside the brackets `pattern` finds (group 1), the last one winning."""
    out: dict[str, str] = {}
    for m in pattern.finditer(text):
        for part in m.group(1).split():
            k, _, v = part.partition("=")
            out[k] = v
    return out


def clamped_int(d: dict[str, str], k: str, default: int, hi: int) -> int:
    """d[k] as an integer in [0, hi]; `default` when absent or not a number."""
    try:
        return max(0, min(int(d[k]), hi)) if k in d else default
    except ValueError:
        return default
