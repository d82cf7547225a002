"""Money as integers.

Balances and costs are integer nano-USD (1 USD = 10**9). Rates are integer
micro-USD per 1M tokens, so one token at rate r costs exactly r/1000 nano-USD,
and multipliers are integer thousandths. Every rate with up to 6 decimals and
every multiplier with up to 3 decimals is therefore exact, and a request's cost
is an exact rational number that is rounded once (see pricing.cost_nano).

APIs speak decimal strings ("12.50"); floats are refused at the edge so none
ever touches an amount.
"""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

NANO_PER_USD = 10**9
NANO_PER_CREDIT = 10**6  # the task gateway's credits: 1,000 credits = 1 USD
MAX_NANO = 2**63 - 1  # BIGINT


class MoneyError(ValueError):
    pass


_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def _decimal(value: object, what: str, places: int) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError(f"{what} must be a decimal string such as \"12.50\", not a JSON number with a fraction")
    if isinstance(value, int):
        d = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        # Plain decimal notation only: "1.5e3" is refused, and so is "1e999999999", whose int() would
        # build a billion-digit number before any range check could refuse it.
        if len(text) > 64 or not _PLAIN.fullmatch(text):
            raise MoneyError(f"{what} is not a decimal number such as \"12.50\": {value[:64]!r}")
        try:
            d = Decimal(text)
        except InvalidOperation:
            raise MoneyError(f"{what} is not a decimal number: {value[:64]!r}") from None
    else:
        raise MoneyError(f"{what} must be a decimal string")
    if not d.is_finite():
        raise MoneyError(f"{what} must be finite")
    if d.as_tuple().exponent < -places and d != d.quantize(Decimal(1).scaleb(-places)):
        raise MoneyError(f"{what} has more than {places} decimal places")
    return d


def _scaled(value: object, what: str, places: int) -> int:
    n = int(_decimal(value, what, places).scaleb(places))
    if abs(n) > MAX_NANO:
        raise MoneyError(f"{what} is too large")
    return n


def parse_usd(value: object, what: str = "amount_usd") -> int:
    """"12.50" -> 12_500_000_000 nano-USD. At most 9 decimal places."""
    return _scaled(value, what, 9)


def parse_rate(value: object, what: str = "rate") -> int:
    """USD per 1M tokens ("1.25") -> micro-USD per 1M tokens (1_250_000). At most 6 decimals."""
    n = _scaled(value, what, 6)
    if n < 0:
        raise MoneyError(f"{what} must not be negative")
    return n


def parse_multiplier(value: object, what: str = "multiplier") -> int:
    """"1.5" -> 1500 thousandths. At most 3 decimals."""
    n = _scaled(value, what, 3)
    if n < 1000:
        raise MoneyError(f"{what} must be at least 1")
    return n


def _format(n: int, places: int, keep: int) -> str:
    sign = "-" if n < 0 else ""
    whole, frac = divmod(abs(n), 10**places)
    digits = f"{frac:0{places}d}".rstrip("0")
    if len(digits) < keep:
        digits = digits.ljust(keep, "0")
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def format_usd(nano: int) -> str:
    """12_500_000_000 -> "12.50"; 1 -> "0.000000001". Always at least 2 decimals."""
    return _format(nano, 9, 2)


def format_rate(micro: int) -> str:
    return _format(micro, 6, 2)


def format_multiplier(milli: int) -> str:
    return _format(milli, 3, 1)


def parse_credits(value: object, what: str = "credits") -> int:
    """Task gateway credits ("12.5") -> nano-USD (12_500_000). At most 6 decimals, never negative."""
    n = _scaled(value, what, 6)
    if n < 0:
        raise MoneyError(f"{what} must not be negative")
    return n


def format_credits(nano: int) -> str:
    """12_500_000 nano-USD -> "12.5" credits; whole numbers without decimals ("50")."""
    return _format(nano, 6, 0)
