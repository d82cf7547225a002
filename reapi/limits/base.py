"""Types shared by the rate-limit backends, plus OpenAI-style header formatting.

Model (identical in every backend): one GCRA bucket per (rule key, kind), kind being
"requests" (cost 1 per call) or "tokens" (cost = prompt tokens + output cap).  With a
limit of L per minute the emission interval is T = 60/L seconds; the bucket remembers
a theoretical arrival time TAT.  ``backlog = max(TAT - now, 0)`` is the time still
owed; a cost c is admitted iff ``backlog + c*T <= 60 s``.  So a client may spend a
whole minute's allowance at once (burst = L) and is then paced at one unit per T.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence, runtime_checkable

__all__ = [
    "Rule",
    "Decision",
    "Limiter",
    "ALLOWED",
    "WINDOW_S",
    "TOO_BIG_RETRY_S",
    "format_reset",
    "H_LIMIT_REQ",
    "H_REMAINING_REQ",
    "H_RESET_REQ",
    "H_LIMIT_TOK",
    "H_REMAINING_TOK",
    "H_RESET_TOK",
]

WINDOW_S = 60.0
# A request costing more tokens than a rule's tpm can never pass that rule. It is
# refused with kind "tokens" and this retry_after (a full window); callers that want
# to tell the client "never" can compare tokens with the rule's tpm themselves.
TOO_BIG_RETRY_S = 60.0
# Float slack for "exactly at the boundary" comparisons (0.1 microsecond).
EPS_S = 1e-7

REQUESTS = "requests"
TOKENS = "tokens"

H_LIMIT_REQ = "x-ratelimit-limit-requests"
H_REMAINING_REQ = "x-ratelimit-remaining-requests"
H_RESET_REQ = "x-ratelimit-reset-requests"
H_LIMIT_TOK = "x-ratelimit-limit-tokens"
H_REMAINING_TOK = "x-ratelimit-remaining-tokens"
H_RESET_TOK = "x-ratelimit-reset-tokens"


@dataclass(frozen=True, slots=True)
class Rule:
    """One limit scope, e.g. ``Rule("acct:default:12", rpm=60, tpm=90_000)``.

    ``None`` means unlimited for that kind.  A limit <= 0 refuses everything of that
    kind (retry_after 60 s).  Keys within one ``admit`` call should be distinct.
    """

    key: str
    rpm: int | None
    tpm: int | None


@dataclass(slots=True)
class Decision:
    """Result of :meth:`Limiter.admit`.

    Treat it as read-only: :data:`ALLOWED` (returned when nothing limits the call) is a
    shared instance whose ``headers`` is an immutable, empty ``dict`` subclass.  Copy
    ``headers`` before adding your own.
    """

    allowed: bool
    kind: str | None  # "requests" | "tokens" when refused, else None
    retry_after_s: float  # when refused: seconds until this same call would be admitted
    headers: dict[str, str]


class _FrozenDict(dict):
    """An empty dict that refuses mutation, so a shared constant cannot be corrupted."""

    __slots__ = ()

    def _ro(self, *a, **k):
        raise TypeError("rate-limit headers of a shared Decision are read-only; copy them first")

    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = __ior__ = _ro  # type: ignore[assignment]


EMPTY_HEADERS: dict[str, str] = _FrozenDict()
ALLOWED = Decision(True, None, 0.0, EMPTY_HEADERS)


@runtime_checkable
class Limiter(Protocol):
    async def admit(self, rules: Sequence[Rule], tokens: int) -> Decision:
        """Check and consume 1 request + ``tokens`` tokens against every rule.

        All-or-nothing: if any rule refuses, nothing is consumed anywhere.
        """
        ...

    async def adjust(self, rules: Sequence[Rule], delta_tokens: int) -> None:
        """Correct tpm buckets after the call by ``actual - admitted`` tokens.

        Positive deltas consume more (possibly into debt, which delays later calls);
        negative deltas give capacity back, never beyond an empty (full) bucket.
        """
        ...

    async def close(self) -> None: ...


def format_reset(seconds: float) -> str:
    """Format a duration like OpenAI's reset headers (Go duration syntax, ms resolution).

    Rounded *up* to the millisecond so a client waiting that long is never early:
    0 -> "0s", 0.12 -> "120ms", 1 -> "1s", 1.5 -> "1.5s", 360 -> "6m0s",
    3723.4 -> "1h2m3.4s".
    """
    ms = math.ceil(seconds * 1000.0 - 1e-6)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    s, frac = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    sec = f"{s}.{frac:03d}".rstrip("0") if frac else str(s)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def build_headers(
    rq_lim: int | None, rq_rem: int, rq_reset: float, tk_lim: int | None, tk_rem: int, tk_reset: float
) -> dict[str, str]:
    """Headers for the most restrictive rule of each kind; a kind with ``lim None`` is omitted."""
    h: dict[str, str] = {}
    if rq_lim is not None:
        h[H_LIMIT_REQ] = str(rq_lim)
        h[H_REMAINING_REQ] = str(rq_rem)
        h[H_RESET_REQ] = format_reset(rq_reset)
    if tk_lim is not None:
        h[H_LIMIT_TOK] = str(tk_lim)
        h[H_REMAINING_TOK] = str(tk_rem)
        h[H_RESET_TOK] = format_reset(tk_reset)
    return h
