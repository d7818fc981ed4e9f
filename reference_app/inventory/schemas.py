"""Request and response bodies of the inventory service (the original's JSON names)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from commercekit.reservations import Reservation, ReservationStatus
from commercekit.reservations.models import SKU
from reference_app.common.money import Amount, ShownAmount

__all__ = [
    "CartLine",
    "LinePublic",
    "ProductCreate",
    "ProductPublic",
    "ReservationPublic",
    "ReserveRequest",
    "ReserveResponse",
    "RestockRequest",
]

MAX_UNITS = 1_000_000
MAX_LINES = 50

Units = Annotated[int, Field(gt=0, le=MAX_UNITS, strict=True)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00]*$"),
]
"""A display name: no NUL (PostgreSQL text refuses it)."""


class ProductCreate(BaseModel):
    """``POST /api/v1/inventory`` (admins only)."""

    model_config = ConfigDict(extra="forbid")

    sku: SKU
    name: Name
    price: Amount
    stock: Annotated[int, Field(ge=0, le=MAX_UNITS, strict=True)]


class RestockRequest(BaseModel):
    """``POST /api/v1/inventory/{productId}/restock`` (admins only): units to add."""

    model_config = ConfigDict(extra="forbid")

    quantity: Units


class ProductPublic(BaseModel):
    """A product and the units that can be reserved now."""

    id: uuid.UUID
    sku: str
    name: str
    price: ShownAmount
    currency: str
    stock: int = Field(description="Units available to reserve now.")


class CartLine(BaseModel):
    """One line of a cart."""

    model_config = ConfigDict(extra="forbid")

    productId: uuid.UUID  # noqa: N815 (the original's JSON name)
    quantity: Units


class ReserveRequest(BaseModel):
    """``POST /api/v1/inventory/reserve``: one product (the original's body) or a cart of `items`.

    Lines naming the same product are summed: all the units must be
    available, or nothing is held.
    """

    model_config = ConfigDict(extra="forbid")

    productId: uuid.UUID | None = None  # noqa: N815
    quantity: Units | None = None
    items: Annotated[list[CartLine], Field(min_length=1, max_length=MAX_LINES)] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        single = self.productId is not None or self.quantity is not None
        if single == (self.items is not None):
            raise ValueError("send either productId and quantity, or items")
        if single and (self.productId is None or self.quantity is None):
            raise ValueError("productId and quantity go together")
        return self

    def lines(self) -> list[CartLine]:
        """The cart's lines, whichever form was sent."""
        if self.items is not None:
            return self.items
        assert self.productId is not None
        assert self.quantity is not None
        return [CartLine(productId=self.productId, quantity=self.quantity)]


class LinePublic(BaseModel):
    """A reserved line."""

    productId: uuid.UUID | None  # noqa: N815 (None: the product is gone)
    sku: str
    quantity: int


class ReservationPublic(BaseModel):
    """A reservation, as its owner sees it."""

    id: str
    status: ReservationStatus
    items: list[LinePublic]
    expiresAt: dt.datetime  # noqa: N815
    createdAt: dt.datetime  # noqa: N815
    updatedAt: dt.datetime  # noqa: N815

    @classmethod
    def of(cls, reservation: Reservation, product_ids: dict[str, uuid.UUID], **fields: Any) -> Self:
        """The public view of `reservation`; `product_ids` maps its SKUs to products.

        `fields` fill a subclass's own fields (`ReserveResponse`'s message).
        """
        return cls(
            **fields,
            id=reservation.id,
            status=reservation.status,
            items=[
                LinePublic(
                    productId=product_ids.get(line.sku), sku=line.sku, quantity=line.quantity
                )
                for line in reservation.lines
            ],
            expiresAt=reservation.expires_at,
            createdAt=reservation.created_at,
            updatedAt=reservation.updated_at,
        )


class ReserveResponse(ReservationPublic):
    """``201`` of a reserve: the original's fields plus the reservation."""

    success: bool = True
    message: str
    reservationId: str  # noqa: N815
