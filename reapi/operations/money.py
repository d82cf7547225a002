"""Decimal-string money from operators -> the store's integers, once, for every caller.

USD amounts become nano-USD, rates USD per 1M tokens become micro-USD per 1M tokens, multipliers
become thousandths. A bad value is a GatewayError(400) naming its field.
"""
from __future__ import annotations

from typing import Callable

from reapi.billing.money import MAX_NANO, MoneyError, parse_multiplier, parse_rate, parse_usd
from reapi.errors import bad_request

MAX_RATE_MICRO = 10**6 * 10**6  # USD 1,000,000 per 1M tokens
MAX_MULTIPLIER_MILLI = 1000 * 1000  # 1000x: the store keeps thousandths in 32 bits


def _parsed(fn: Callable[[object, str], int], value: object, param: str, most: int) -> int:
    try:
        n = fn(value, param)
    except MoneyError as exc:
        raise bad_request(str(exc), param=param) from None
    if n > most:
        raise bad_request(f"{param} is too large.", param=param)
    return n


def usd(value: object, param: str, *, positive: bool = True) -> int:
    """"12.50" -> nano-USD; with `positive` (the default) zero and negative amounts are refused."""
    n = _parsed(parse_usd, value, param, MAX_NANO)
    if positive and n <= 0:
        raise bad_request(f"{param} must be greater than zero.", param=param)
    return n


def rate(value: object, param: str) -> int:
    """USD per 1M tokens -> micro-USD per 1M tokens (never negative)."""
    return _parsed(parse_rate, value, param, MAX_RATE_MICRO)


def multiplier(value: object, param: str) -> int:
    """"1.5" -> 1500 thousandths (at least 1)."""
    return _parsed(parse_multiplier, value, param, MAX_MULTIPLIER_MILLI)
