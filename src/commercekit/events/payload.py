"""What every event's data is built from: the `EventPayload` base and its field types.

```python
from commercekit.events.payload import Amount, EventPayload, Identifier


class GiftCardIssued(EventPayload):
    event_type = "gift_card.issued"
    schema_version = 1
    topic = "gift-cards"
    key_field = "card_id"

    card_id: Identifier
    amount: Amount
```

The envelope (`commercekit.events.envelope`) needs only this module, so it
is complete on import, without the catalog; the catalog
(`commercekit.events.catalog`) holds the built-in payloads.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, WithJsonSchema

__all__ = ["Amount", "Currency", "EventPayload", "Identifier"]

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=200)]
"""An id of something (a reservation, a user, a payment): 1-200 characters."""

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
"""An ISO 4217 currency code (``"EUR"``)."""

_AMOUNT = re.compile(r"^\d{1,15}(\.\d{1,6})?$")


def _amount(value: object) -> object:
    if isinstance(value, bool | int | float):
        raise ValueError("an amount is a decimal string such as '12.50', not a JSON number")
    if isinstance(value, str):
        if not _AMOUNT.match(value):
            raise ValueError("an amount is a non-negative decimal string such as '12.50'")
        return Decimal(value)
    if isinstance(value, Decimal) and (not value.is_finite() or value < 0):
        raise ValueError("an amount is a finite, non-negative decimal")
    return value


Amount = Annotated[
    Decimal,
    BeforeValidator(_amount),
    WithJsonSchema({"type": "string", "pattern": _AMOUNT.pattern, "examples": ["12.50"]}),
]
"""A non-negative money amount: a `Decimal` in Python, a decimal string in JSON."""


class EventPayload(BaseModel):
    """Base class of every event's data.

    A subclass sets the four class variables below. Payloads are immutable
    and refuse unknown fields.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    """The CloudEvents ``type``: dotted and past tense (``"reservation.expired"``)."""
    schema_version: ClassVar[int]
    """The contract version; bump it on a change that is not backward compatible."""
    topic: ClassVar[str]
    """The logical topic (before `TopicNames` applies its prefix and overrides)."""
    key_field: ClassVar[str]
    """The field whose value is the partition key."""

    def partition_key(self) -> str:
        """The value of `key_field`: events with one key stay in order."""
        return str(getattr(self, self.key_field))
