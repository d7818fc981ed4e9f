"""Money split over parts and shares of units: exact sums, in the currency's smallest unit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from commercekit.errors import InvalidRequest
from commercekit.payments.amounts import decimals, in_units, share, split


def test_a_split_adds_up_exactly_and_follows_the_weights() -> None:
    assert split(Decimal("10.00"), [1, 1, 1], "EUR") == [
        Decimal("3.34"),
        Decimal("3.33"),
        Decimal("3.33"),
    ]
    assert split(Decimal("30.00"), [Decimal("10"), Decimal("20")], "EUR") == [
        Decimal("10.00"),
        Decimal("20.00"),
    ]
    assert split(Decimal("10"), [1, 2], "JPY") == [Decimal("3"), Decimal("7")]
    assert split(Decimal("7.00"), [0, 0], "EUR") == [Decimal("3.50"), Decimal("3.50")]
    # a total finer than the currency keeps its own last digit
    assert split(Decimal("10.005"), [1, 1], "EUR") == [Decimal("5.003"), Decimal("5.002")]


def test_bad_splits_and_shares_are_refused() -> None:
    with pytest.raises(InvalidRequest):
        split(Decimal("1"), [], "EUR")
    with pytest.raises(InvalidRequest):
        split(Decimal("1"), [1, -1], "EUR")
    with pytest.raises(InvalidRequest):
        share(Decimal("1"), 4, of=3, currency="EUR")
    assert (decimals("EUR"), decimals("JPY"), decimals("KWD")) == (2, 0, 3)


@given(
    cents=st.integers(min_value=0, max_value=10**9),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20),
)
def test_every_split_adds_up_to_its_total(cents: int, weights: list[int]) -> None:
    total = Decimal(cents).scaleb(-2)
    parts = split(total, weights, "EUR")
    assert sum(parts) == total
    assert all(part >= 0 and part == part.quantize(Decimal("0.01")) for part in parts)


@given(
    cents=st.integers(min_value=0, max_value=10**9),
    units=st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=10),
)
def test_refunding_a_line_in_any_steps_gives_back_exactly_its_amount(
    cents: int, units: list[int]
) -> None:
    amount, of = Decimal(cents).scaleb(-2), sum(units)
    taken, refunded = 0, Decimal(0)
    for step in units:
        part = share(amount, taken + step, of=of, currency="EUR") - share(
            amount, taken, of=of, currency="EUR"
        )
        assert part >= 0
        taken, refunded = taken + step, refunded + part
        assert refunded <= amount
    assert refunded == amount


def test_an_amount_is_written_to_its_currencys_smallest_unit() -> None:
    assert str(in_units(Decimal("30.000000"), "EUR")) == "30.00"
    assert str(in_units(Decimal("30.000000"), "JPY")) == "30"
    assert str(in_units(Decimal("10.005000"), "EUR")) == "10.005"  # never rounded away
