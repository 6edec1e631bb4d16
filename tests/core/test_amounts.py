"""Amounts as users type them (`--deposit 12.5`, `250000u`, a provider's "2.50"): money.parse_amount
is the one reader. Whatever the text, it answers an integer of micro-units or a ValueError, in
bounded time and memory (no float, no billion-digit integer, no crash on inf)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marketplace.core.money import MAX_PARSED_MICRO, MICRO, parse_amount


@pytest.mark.parametrize(
    ("text", "micro"),
    [
        ("12.5", 12_500_000),
        ("250000u", 250_000),
        ("0.0001", 100),
        (" 5 ", 5 * MICRO),
        ("1_000", 1000 * MICRO),
        ("1e3u", 1000),
        ("0.000001", 1),
        ("0", 0),  # whether zero is an amount is the caller's to say
    ],
)
def test_amounts_read_as_micro_units(text: str, micro: int) -> None:
    assert parse_amount(text) == micro


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("inf", "not an amount"),
        ("-inf", "not an amount"),
        ("nan", "not an amount"),
        ("snan", "not an amount"),
        ("12.5u", "'12.5u' is not a whole number of micro-units"),
        (
            "0.0000005",
            r"'0.0000005' is not a whole number of micro-units \(the smallest amount is 0\.000001",
        ),
        ("1.0000001", "not a whole number of micro-units"),  # before: 1.000000, silently
        ("1e-7", "not a whole number of micro-units"),
        ("1,000", "not an amount"),
        ("", "not an amount"),
        ("-5", "must not be negative"),
        ("1e100", "too large"),
        ("1e999999999", "not an amount"),  # past the decimal context: refused, not computed
        ("9" * 60, "too large"),
        ("9" * 5000, "not an amount"),  # longer than any amount: refused before it is read
        ("9" * 5000 + "u", "not an amount"),
    ],
)
def test_what_is_not_an_amount_is_refused_in_words(text: str, said: str) -> None:
    with pytest.raises(ValueError, match=said) as refused:
        parse_amount(text)
    assert len(str(refused.value)) < 200  # the text is quoted cut short


@given(st.text(max_size=80))
def test_any_text_is_an_amount_or_a_value_error_quickly(text: str) -> None:
    started = time.process_time()
    try:
        micro = parse_amount(text)
    except ValueError:
        pass
    else:
        assert isinstance(micro, int) and 0 <= micro <= MAX_PARSED_MICRO
    assert time.process_time() - started < 0.5
