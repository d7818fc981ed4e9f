"""Money in the services' JSON: a number or a decimal string in, a decimal string out.

Amounts are `Decimal` end to end, never floats. Answers show them as the
events carry them: ``"20.00"``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, Field, PlainSerializer

__all__ = ["MAX_AMOUNT", "Amount", "ShownAmount"]

MAX_AMOUNT = Decimal("1000000.00")
"""The largest price, or payment, the services accept; a cart totalling more is refused."""

_CENT = Decimal("0.01")


def _cents(value: Decimal) -> Decimal:
    return value.quantize(_CENT)


def _shown(value: Decimal) -> str:
    """``"20.00"``: two decimals, more only when the amount has them."""
    return str(value.quantize(_CENT) if value == value.quantize(_CENT) else value.normalize())


ShownAmount = Annotated[Decimal, PlainSerializer(_shown, return_type=str, when_used="json")]
"""An amount shown as a decimal string (``"20.00"``)."""

Amount = Annotated[
    Decimal,
    Field(gt=0, le=MAX_AMOUNT, decimal_places=2, allow_inf_nan=False),
    AfterValidator(_cents),
    PlainSerializer(_shown, return_type=str, when_used="json"),
]
"""A JSON number or decimal string, greater than 0, at most `MAX_AMOUNT`, 2 decimals at most."""
