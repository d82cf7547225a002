"""What a call costs, and how much to hold before making it.

Cost rule (README "Billing"): input tokens split into uncached, cache-read and
cache-write parts, each at its rate; output tokens at the output rate. When the
input tokens exceed the model's long-context threshold, the whole call (every
input part and the output) bills at the long-context multipliers. The exact
rational result is rounded UP once, to the next whole nano-USD.
"""
from __future__ import annotations

from reapi.catalog import Price

# rate (micro-USD per 1M tokens) * tokens * multiplier (thousandths) / DIVISOR = nano-USD
DIVISOR = 1_000_000


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def multipliers(price: Price, prompt_tokens: int) -> tuple[int, int]:
    lc = price.long_context
    if lc is not None and prompt_tokens > lc.threshold_tokens:
        return lc.input_multiplier_milli, lc.output_multiplier_milli
    return 1000, 1000


def _input_numerator(price: Price, prompt_tokens: int, cached: int, cache_write: int, in_mult: int) -> int:
    cached = min(cached, prompt_tokens)
    cache_write = min(cache_write, prompt_tokens - cached)
    uncached = prompt_tokens - cached - cache_write
    cached_rate = price.input_micro if price.cached_input_micro is None else price.cached_input_micro
    write_rate = price.input_micro if price.cache_write_micro is None else price.cache_write_micro
    return (uncached * price.input_micro + cached * cached_rate + cache_write * write_rate) * in_mult


def cost_nano(price: Price, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0,
              cache_write_tokens: int = 0) -> int:
    """The charge for one call, in nano-USD. The tier follows prompt_tokens."""
    in_mult, out_mult = multipliers(price, prompt_tokens)
    numer = _input_numerator(price, prompt_tokens, cached_tokens, cache_write_tokens, in_mult)
    numer += completion_tokens * price.output_micro * out_mult
    return _ceil_div(numer, DIVISOR)


def affordable_output(price: Price, prompt_tokens: int, budget_nano: int) -> int:
    """The most output tokens a budget pays for on top of the prompt (-1 if not even the prompt)."""
    in_mult, out_mult = multipliers(price, prompt_tokens)
    room = budget_nano * DIVISOR - _input_numerator(price, prompt_tokens, 0, 0, in_mult)
    if room < 0:
        return -1
    per_token = price.output_micro * out_mult
    if per_token == 0:
        return 2**31 - 1
    return room // per_token
