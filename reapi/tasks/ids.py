"""Task ids: "task_" + 26 characters (a ULID: 48 bits of milliseconds, 80 random bits, Crockford
base32), so ids sort by creation time and cannot be guessed."""
from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
TASK_ID = re.compile(r"task_[0-9A-HJKMNP-TV-Z]{26}")


def new_task_id(now_ms: int | None = None) -> str:
    n = ((now_ms if now_ms is not None else int(time.time() * 1000)) << 80) | secrets.randbits(80)
    out = []
    for _ in range(26):
        out.append(_ALPHABET[n & 31])
        n >>= 5
    return "task_" + "".join(reversed(out))


def is_task_id(value: str) -> bool:
    return TASK_ID.fullmatch(value) is not None


def first_id_at(ms: int) -> str:
    """The smallest task id made at or after `ms`: ids sort by time, so `id >= first_id_at(t)` is a
    range scan of the primary key for the tasks created since t."""
    n = max(ms, 0) << 80
    out = []
    for _ in range(26):
        out.append(_ALPHABET[n & 31])
        n >>= 5
    return "task_" + "".join(reversed(out))
