"""Exact pricing arithmetic, table-driven: amounts in nano-USD (1 USD = 10**9)."""
import pytest

from reapi.billing.money import (MoneyError, format_multiplier, format_rate, format_usd, parse_multiplier,
                                 parse_rate, parse_usd)
from reapi.billing.pricing import affordable_output, cost_nano
from reapi.catalog import LongContext, Price

# gpt-5.5-like card: $5 / $30 per 1M, cached input $0.50, long context above 272K at 2x / 1.5x
GPT55 = Price(model="gpt-5.5", input_micro=5_000_000, output_micro=30_000_000, cached_input_micro=500_000,
              context_window=1_000_000, max_output_tokens=128_000,
              long_context=LongContext(272_000, 2000, 1500))
# rates with six decimals to exercise rounding: $0.000123 / $0.000456 per 1M
TINY = Price(model="tiny", input_micro=123, output_micro=456)
MINI = Price(model="mini", input_micro=150_000, output_micro=600_000)
CLAUDE = Price(model="claude", input_micro=3_000_000, output_micro=15_000_000, cached_input_micro=300_000,
               cache_write_micro=3_750_000)


@pytest.mark.parametrize("price,prompt,completion,cached,write,expected", [
    # 12 in * $5/M = $0.00006 ; 9 out * $30/M = $0.00027
    (GPT55, 12, 9, 0, 0, 60_000 + 270_000),
    # exactly at the threshold: standard rate
    (GPT55, 272_000, 1_000, 0, 0, 272_000 * 5_000 + 1_000 * 30_000),
    # one token over: the whole call at 2x input and 1.5x output
    (GPT55, 272_001, 1_000, 0, 0, 272_001 * 10_000 + 1_000 * 45_000),
    # the spec's examples: 270K stays standard, 280K shifts
    (GPT55, 270_000, 0, 0, 0, 1_350_000_000),
    (GPT55, 280_000, 0, 0, 0, 2_800_000_000),
    # cached tokens bill at the cached rate; the rest at the input rate
    (GPT55, 1_000, 0, 400, 0, 600 * 5_000 + 400 * 500),
    # cached tokens in the long tier get the multiplier too
    (GPT55, 300_000, 10, 100_000, 0, 200_000 * 10_000 + 100_000 * 1_000 + 10 * 45_000),
    # $0.15/M is 150 nano-USD per token: exact
    (MINI, 7, 3, 0, 0, 7 * 150 + 3 * 600),
    # 1 token at $0.000123/M = 0.123 nano-USD -> rounds UP to 1
    (TINY, 1, 0, 0, 0, 1),
    # 7 * 0.123 + 3 * 0.456 = 0.861 + 1.368 = 2.229 -> 3 (one rounding per request)
    (TINY, 7, 3, 0, 0, 3),
    # 1000 * 0.123 = 123 exactly: no rounding
    (TINY, 1000, 0, 0, 0, 123),
    # Anthropic-style: 1000 input of which 200 cache reads and 300 cache writes, 50 output
    (CLAUDE, 1_000, 50, 200, 300, 500 * 3_000 + 200 * 300 + 300 * 3_750 + 50 * 15_000),
    (GPT55, 0, 0, 0, 0, 0),
])
def test_cost(price, prompt, completion, cached, write, expected):
    assert cost_nano(price, prompt, completion, cached, write) == expected


def test_affordable_output_is_the_largest_that_fits():
    for budget in (0, 1, 59_999, 60_000, 60_001, 1_000_000, 123_456_789):
        k = affordable_output(GPT55, 12, budget)
        if k < 0:
            assert cost_nano(GPT55, 12, 0) > budget
            continue
        assert cost_nano(GPT55, 12, k) <= budget < cost_nano(GPT55, 12, k + 1)


@pytest.mark.parametrize("text,nano", [("12.50", 12_500_000_000), ("0.000000001", 1), ("3", 3_000_000_000),
                                       (7, 7_000_000_000), ("-1.5", -1_500_000_000), (" .5 ", 500_000_000),
                                       ("+2.", 2_000_000_000)])
def test_parse_usd(text, nano):
    assert parse_usd(text) == nano


@pytest.mark.parametrize("bad", [1.5, "abc", "0.0000000001", "NaN", "Infinity", None, True, [1],
                                 # exponent notation: "1e99999999" raised decimal.Overflow (a 500), and
                                 # "1e999990" made int() build a million-digit number before the range check
                                 "1.5e3", "1e99999999", "1e999990", "1E2", "1_000", "0x10", "\uff11\uff12", "",
                                 "1" * 65])
def test_parse_usd_rejects(bad):
    with pytest.raises(MoneyError):
        parse_usd(bad)


def test_formats():
    assert format_usd(12_500_000_000) == "12.50"
    assert format_usd(1) == "0.000000001"
    assert format_usd(0) == "0.00"
    assert format_usd(-330_000) == "-0.00033"
    assert format_rate(parse_rate("1.25")) == "1.25"
    assert format_rate(parse_rate("0.075")) == "0.075"
    assert parse_rate("0.000001") == 1
    assert format_multiplier(parse_multiplier("1.5")) == "1.5"
    with pytest.raises(MoneyError):
        parse_rate("-1")
    with pytest.raises(MoneyError):
        parse_multiplier("0.5")
