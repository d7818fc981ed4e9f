"""Money split into parts that add up to it exactly, in a currency's smallest unit.

```python
split(Decimal("10.00"), [1, 1, 1], "EUR")   # [3.34, 3.33, 3.33]: sums to 10.00
share(Decimal("10.00"), 1, of=3, currency="EUR")  # 3.33: what 1 unit of 3 was paid
```

An order's payment is split over its lines (`split`), and a refund of some
of a line's units is what their share of the line's amount adds
(`share`, taken cumulatively: refunding a line's units one by one gives back
exactly what the line was paid, never a cent more).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from commercekit.errors import InvalidRequest

__all__ = ["decimals", "in_units", "share", "split"]

_ZERO_DECIMALS = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMALS = "BHD IQD JOD KWD LYD OMR TND"
_DECIMALS = {  # ISO 4217: the currencies whose smallest unit is not a hundredth
    **dict.fromkeys(_ZERO_DECIMALS.split(), 0),
    **dict.fromkeys(_THREE_DECIMALS.split(), 3),
}


def decimals(currency: str) -> int:
    """The decimals of `currency`'s smallest unit (ISO 4217): 2 unless it is known otherwise."""
    return _DECIMALS.get(currency, 2)


def in_units(amount: Decimal, currency: str) -> Decimal:
    """`amount` written to the currency's smallest unit: ``30.000000`` EUR is ``30.00``.

    Digits beyond that unit are kept when they are not zero (``10.005``).
    A database's NUMERIC column hands amounts back with all its decimals.
    """
    unit = _unit(currency)
    exact = amount.quantize(unit)
    return exact if exact == amount else amount.normalize()


def _unit(currency: str) -> Decimal:
    return Decimal(1).scaleb(-decimals(currency))


def _exponent(amount: Decimal) -> int:
    exponent = amount.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # a finite amount
    return exponent


def split(total: Decimal, weights: Sequence[Decimal | int], currency: str) -> list[Decimal]:
    """`total` in parts proportional to `weights`, that add up to `total` exactly.

    Each part is rounded down to the currency's smallest unit (or to the
    total's own last digit, when it has more), and the units left over go
    one each to the parts that rounding cut most (the earliest first, on a
    tie). All-zero weights split evenly.

    Raises:
        InvalidRequest: no weights, a negative one, or a negative total.
    """
    if not weights or any(w < 0 for w in weights) or total < 0:
        raise InvalidRequest("a split needs a total of 0 or more and weights of 0 or more")
    unit = min(_unit(currency), Decimal(1).scaleb(min(0, _exponent(total))))
    parts = [Decimal(w) for w in weights]
    whole = sum(parts, start=Decimal(0))
    if whole == 0:
        parts, whole = [Decimal(1)] * len(parts), Decimal(len(parts))
    exact = [total * w / whole for w in parts]
    rounded = [x.quantize(unit, rounding=ROUND_FLOOR) for x in exact]
    left = int((total - sum(rounded, start=Decimal(0))) / unit)
    by_cut = sorted(range(len(parts)), key=lambda i: (-(exact[i] - rounded[i]), i))
    for i in by_cut[:left]:
        rounded[i] += unit
    return rounded


def share(amount: Decimal, units: int, *, of: int, currency: str) -> Decimal:
    """What the first `units` of `of` units cost, of `amount` paid for all of them.

    Rounded to the currency's smallest unit, or to the amount's own last
    digit when it has more (half to even); the share of all `of` units is
    `amount` itself, and each more unit adds 0 or more. A refund of units
    ``c + 1`` to ``c + k`` is ``share(a, c + k, ...) - share(a, c, ...)``.

    Raises:
        InvalidRequest: `units` is not within 0 and `of`.
    """
    if not 0 <= units <= of or of <= 0:
        raise InvalidRequest(f"a share is of 0 to {of} units, not {units}")
    if units == of:
        return amount
    unit = min(_unit(currency), Decimal(1).scaleb(min(0, _exponent(amount))))
    return (amount * units / of).quantize(unit, rounding=ROUND_HALF_EVEN)
