"""Request and response bodies of the inventory service (the original's JSON names)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from commercekit.orders import (
    Cancellation,
    CancellationId,
    Order,
    OrderStatus,
    RestockType,
    Return,
    ReturnId,
    Shipment,
    ShipmentId,
)
from commercekit.reservations import (
    DEFAULT_LOCATION,
    Channel,
    Kit,
    LocationName,
    Reservation,
    ReservationStatus,
    Split,
    StockEntry,
    StockLevel,
    StockQuantities,
    StockReason,
    StockState,
    Strategy,
)
from commercekit.reservations.kits import MAX_COMPONENTS
from commercekit.reservations.locations import MAX_LOCATIONS
from commercekit.reservations.models import SKU
from reference_app.common.money import Amount, ShownAmount

__all__ = [
    "AllocationPublic",
    "BackorderPut",
    "CancellationPost",
    "CancellationPublic",
    "CartLine",
    "ChannelPublic",
    "ChannelPut",
    "KitComponent",
    "KitComponentPublic",
    "KitPublic",
    "KitPut",
    "LinePublic",
    "LocationPublic",
    "LocationPut",
    "LocationStockPublic",
    "LocationStockPut",
    "OrderLinePublic",
    "OrderPublic",
    "ProductCreate",
    "ProductPublic",
    "PurchaseLimitPublic",
    "PurchaseLimitPut",
    "ReservationPublic",
    "ReserveRequest",
    "ReserveResponse",
    "RestockRequest",
    "ReturnItem",
    "ReturnLinePublic",
    "ReturnPost",
    "ReturnPublic",
    "ShipmentItem",
    "ShipmentLinePublic",
    "ShipmentPost",
    "ShipmentPublic",
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
    location: LocationName | None = Field(
        default=None,
        description="Where the units arrive (a known location; the default one if absent).",
    )


class LocationPut(BaseModel):
    """``PUT /api/v1/inventory/locations/{name}`` (admins only)."""

    model_config = ConfigDict(extra="forbid")

    label: Name


class LocationPublic(BaseModel):
    """A place stock is kept."""

    name: str
    label: str


class ChannelLocationBody(BaseModel):
    """A location a channel sells from, and the units it keeps back there."""

    model_config = ConfigDict(extra="forbid")

    location: LocationName
    safetyStock: Annotated[int, Field(ge=0, le=MAX_UNITS, strict=True)] = 0  # noqa: N815


class ChannelPut(BaseModel):
    """``PUT /api/v1/inventory/channels/{name}`` (admins only): where it sells from, and how."""

    model_config = ConfigDict(extra="forbid")

    locations: Annotated[
        list[ChannelLocationBody], Field(min_length=1, max_length=MAX_LOCATIONS)
    ] = Field(description="In priority order; each a known location, once.")
    strategy: Strategy = Strategy.PRIORITY
    split: Split = Split.LINES

    @model_validator(mode="after")
    def _once_each(self) -> Self:
        names = [place.location for place in self.locations]
        if len(set(names)) != len(names):
            raise ValueError("a channel names each location once")
        return self


class ChannelPublic(ChannelPut):
    """A sales channel."""

    name: str

    @classmethod
    def of(cls, channel: Channel) -> Self:
        """The public view of `channel`."""
        return cls(
            name=channel.name,
            locations=[
                ChannelLocationBody(location=place.name, safetyStock=place.safety_stock)
                for place in channel.locations
            ],
            strategy=channel.strategy,
            split=channel.split,
        )


class LocationStockPut(BaseModel):
    """``PUT /api/v1/inventory/{productId}/stock/{location}`` (admins only): units on hand there."""

    model_config = ConfigDict(extra="forbid")

    onHand: Annotated[int, Field(ge=0, le=MAX_UNITS, strict=True)]  # noqa: N815


class BackorderPut(BaseModel):
    """``PUT /api/v1/inventory/{productId}/backorder/{location}`` (admins only)."""

    model_config = ConfigDict(extra="forbid")

    cap: Annotated[int, Field(ge=0, le=MAX_UNITS, strict=True)] = Field(
        description="Units that may be held beyond the stock there (0 stops backorders)."
    )


class LocationStockPublic(BaseModel):
    """A product's units at one location (`available` is negative when units are owed)."""

    location: str
    available: int
    held: int
    sold: int
    backorder: int = Field(description="Units that may be held beyond the stock here.")
    backordered: int = Field(description="Units held beyond the stock, owed until it arrives.")

    @classmethod
    def of(cls, level: StockLevel) -> Self:
        """The public view of `level`."""
        return cls(
            location=level.location,
            available=level.available,
            held=level.held,
            sold=level.sold,
            backorder=level.backorder,
            backordered=level.backordered,
        )


class PurchaseLimitPut(BaseModel):
    """``PUT /api/v1/inventory/{productId}/limit`` (admins only): units per shopper and window."""

    model_config = ConfigDict(extra="forbid")

    quantity: Annotated[int, Field(ge=0, le=MAX_UNITS, strict=True)] = Field(
        description="Units one shopper may hold or buy within the window (0: no limit)."
    )
    windowSeconds: Annotated[int, Field(ge=1, le=366 * 86_400, strict=True)]  # noqa: N815


class PurchaseLimitPublic(BaseModel):
    """A product's purchase limit (`quantity` 0: none)."""

    productId: uuid.UUID  # noqa: N815
    quantity: int
    windowSeconds: int | None  # noqa: N815


class KitComponent(BaseModel):
    """One component of a kit: a product and its units per kit."""

    model_config = ConfigDict(extra="forbid")

    productId: uuid.UUID  # noqa: N815
    quantity: Units


class KitPut(BaseModel):
    """``PUT /api/v1/inventory/{productId}/kit`` (admins only): what one unit of the kit is."""

    model_config = ConfigDict(extra="forbid")

    components: Annotated[list[KitComponent], Field(min_length=1, max_length=MAX_COMPONENTS)]


class KitComponentPublic(BaseModel):
    """A kit's component."""

    productId: uuid.UUID | None  # noqa: N815 (None: the product is gone)
    sku: str
    quantity: int


class KitPublic(BaseModel):
    """A kit product: its components per unit, and the version of that definition."""

    productId: uuid.UUID  # noqa: N815
    sku: str
    version: int
    components: list[KitComponentPublic]
    updatedAt: dt.datetime | None  # noqa: N815

    @classmethod
    def of(cls, product_id: uuid.UUID, kit: Kit, product_ids: dict[str, uuid.UUID]) -> Self:
        """The public view of `kit`; `product_ids` maps its components' SKUs to products."""
        return cls(
            productId=product_id,
            sku=kit.sku,
            version=kit.version,
            components=[
                KitComponentPublic(
                    productId=product_ids.get(part.sku), sku=part.sku, quantity=part.quantity
                )
                for part in kit.components
            ],
            updatedAt=kit.updated_at,
        )


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
    channel: LocationName | None = Field(
        default=None,
        description="The sales channel to reserve in: its locations and rules allocate the "
        "lines. Without one, the default location.",
    )

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


class AllocationPublic(BaseModel):
    """Units of a line held at one location; `backordered` of them beyond its stock."""

    productId: uuid.UUID | None  # noqa: N815 (None: the product is gone)
    sku: str
    location: str
    quantity: int
    backordered: int = 0


class ReservationPublic(BaseModel):
    """A reservation, as its owner sees it."""

    id: str
    status: ReservationStatus
    items: list[LinePublic]
    allocations: list[AllocationPublic] = Field(
        default_factory=list,
        description="Where the units are held, for a reservation made in a channel.",
    )
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
            allocations=[
                AllocationPublic(
                    productId=product_ids.get(a.sku),
                    sku=a.sku,
                    location=a.location,
                    quantity=a.quantity,
                    backordered=a.backordered,
                )
                for a in reservation.allocations
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


# -------------------------------------------------------------------- orders
class OrderLinePublic(BaseModel):
    """The units of a product an order holds at one location: shipped, cancelled, committed."""

    productId: uuid.UUID | None  # noqa: N815 (None: the product is gone)
    sku: str
    location: str
    quantity: int
    shipped: int
    cancelled: int = Field(description="Cancelled before they shipped: back on sale here.")
    committed: int = Field(
        description="Sold and still here, to ship: `quantity - shipped - cancelled`."
    )
    returned: int = Field(default=0, description="Shipped units that came back.")
    damaged: int = Field(
        default=0, description="Of the returned units, those back here that are never for sale."
    )
    amount: ShownAmount | None = Field(
        default=None,
        description="What the order's payment paid for the line's `quantity` units (the "
        "payment split over the lines by their prices); a cancelled unit's share is refunded.",
    )


class OrderPublic(BaseModel):
    """A paid reservation's order, as its owner sees it (its id is the reservation's)."""

    id: str
    status: OrderStatus
    items: list[OrderLinePublic]
    createdAt: dt.datetime  # noqa: N815
    updatedAt: dt.datetime  # noqa: N815

    @classmethod
    def of(cls, order: Order, product_ids: dict[str, uuid.UUID]) -> Self:
        """The public view of `order`; `product_ids` maps its SKUs to products."""
        return cls(
            id=order.id,
            status=order.status,
            items=[
                OrderLinePublic(
                    productId=product_ids.get(line.sku),
                    sku=line.sku,
                    location=line.location,
                    quantity=line.quantity,
                    shipped=line.shipped,
                    cancelled=line.cancelled,
                    committed=line.committed,
                    returned=line.returned,
                    damaged=line.damaged,
                    amount=line.amount,
                )
                for line in order.lines
            ],
            createdAt=order.created_at,
            updatedAt=order.updated_at,
        )


class ShipmentItem(BaseModel):
    """Units of a product to ship; `location` where the order holds it at several."""

    model_config = ConfigDict(extra="forbid")

    productId: uuid.UUID  # noqa: N815
    quantity: Units
    location: LocationName | None = None


class ShipmentPost(BaseModel):
    """``POST /api/v1/orders/{id}/shipments``: a shipment, made once per `shipmentId`."""

    model_config = ConfigDict(extra="forbid")

    shipmentId: ShipmentId = Field(  # noqa: N815
        description="The caller's id for this shipment (a label, a packing slip): the same "
        "id again is answered with the shipment it made, never a second one."
    )
    items: Annotated[list[ShipmentItem], Field(min_length=1, max_length=MAX_LINES)]


class CancellationPost(BaseModel):
    """``POST /api/v1/orders/{id}/cancellations``: a cancellation, made once per id."""

    model_config = ConfigDict(extra="forbid")

    cancellationId: CancellationId = Field(  # noqa: N815
        description="The caller's id for this cancellation (a ticket, a request): the same "
        "id again is answered with the cancellation it made, and its units go back once."
    )
    items: Annotated[list[ShipmentItem], Field(min_length=1, max_length=MAX_LINES)] | None = Field(
        default=None, description="What to cancel; without it, every unit not shipped."
    )


class ShipmentLinePublic(BaseModel):
    """Units of a product at one location: that left in a shipment, or went back on sale."""

    productId: uuid.UUID | None  # noqa: N815 (None: the product is gone)
    sku: str
    location: str
    quantity: int


class _OrderChangePublic(BaseModel):
    id: str
    orderId: str  # noqa: N815
    items: list[ShipmentLinePublic]
    createdAt: dt.datetime  # noqa: N815

    @classmethod
    def of(cls, change: Shipment | Cancellation, product_ids: dict[str, uuid.UUID]) -> Self:
        """The public view of `change`; `product_ids` maps its SKUs to products."""
        return cls(
            id=change.id,
            orderId=change.order_id,
            items=[
                ShipmentLinePublic(
                    productId=product_ids.get(line.sku),
                    sku=line.sku,
                    location=line.location,
                    quantity=line.quantity,
                )
                for line in change.lines
            ],
            createdAt=change.created_at,
        )


class ShipmentPublic(_OrderChangePublic):
    """A shipment of an order: units that left."""


class CancellationPublic(_OrderChangePublic):
    """A cancellation of an order: units that went back on sale where they were held."""

    refundId: str | None = Field(  # noqa: N815
        default=None,
        description="The refund of what the units were paid (the payment service makes it); "
        "none when nothing was left to refund.",
    )
    refunded: ShownAmount = Field(default=Decimal(0), description="What that refund gives back.")

    @classmethod
    def of(cls, change: Shipment | Cancellation, product_ids: dict[str, uuid.UUID]) -> Self:
        """The public view of `change`, with its refund; `product_ids` maps its SKUs."""
        shown = super().of(change, product_ids)
        if isinstance(change, Cancellation):
            shown = shown.model_copy(
                update={"refundId": change.refund_id, "refunded": change.refunded}
            )
        return shown


class ReturnItem(ShipmentItem):
    """Units of a product received back; `location` where the order holds it at several."""

    restock: RestockType = Field(
        description="RESELL: on sale again where it shipped from; DAMAGED: on hand there, "
        "never sold again; NONE: written off."
    )
    restockAt: LocationName | None = Field(  # noqa: N815
        default=None,
        description="RESELL only: put the units on sale at this location instead (a return "
        "received at another warehouse).",
    )

    @model_validator(mode="after")
    def _resell_only(self) -> Self:
        if self.restockAt is not None and self.restock is not RestockType.RESELL:
            raise ValueError("restockAt is for RESELL items only")
        return self


class ReturnPost(BaseModel):
    """``POST /api/v1/orders/{id}/returns``: a return received, once per `returnId`."""

    model_config = ConfigDict(extra="forbid")

    returnId: ReturnId = Field(  # noqa: N815
        description="The caller's id for this return (an RMA number, a parcel's label): the "
        "same id again is answered with the return it made, restocked and refunded once."
    )
    items: Annotated[list[ReturnItem], Field(min_length=1, max_length=MAX_LINES)]


class ReturnLinePublic(ShipmentLinePublic):
    """Units of a product received back at one location, and what became of them."""

    restock: RestockType
    restockAt: str | None = Field(  # noqa: N815
        default=None, description="Where RESELL units went on sale, when not where they shipped."
    )


class ReturnPublic(BaseModel):
    """A return of an order: shipped units received back, restocked, and refunded."""

    id: str
    orderId: str  # noqa: N815
    items: list[ReturnLinePublic]
    createdAt: dt.datetime  # noqa: N815
    refundId: str | None = Field(  # noqa: N815
        default=None,
        description="The refund of what the units were paid (the payment service makes it).",
    )
    refunded: ShownAmount = Field(default=Decimal(0), description="What that refund gives back.")

    @classmethod
    def of(cls, made: Return, product_ids: dict[str, uuid.UUID]) -> Self:
        """The public view of `made`; `product_ids` maps its SKUs to products."""
        return cls(
            id=made.id,
            orderId=made.order_id,
            items=[
                ReturnLinePublic(
                    productId=product_ids.get(line.sku),
                    sku=line.sku,
                    location=line.location,
                    quantity=line.quantity,
                    restock=line.restock,
                    restockAt=line.restock_at,
                )
                for line in made.lines
            ],
            createdAt=made.created_at,
            refundId=made.refund_id,
            refunded=made.refunded,
        )


# ------------------------------------------------------------------ journal
class StockQuantitiesPublic(BaseModel):
    """A product's units at one location in each state; ``onHand`` is the first three."""

    available: int
    held: int
    committed: int
    shipped: int
    damaged: int
    writtenOff: int  # noqa: N815
    onHand: int  # noqa: N815

    @classmethod
    def of(cls, level: StockQuantities) -> Self:
        """The public view of `level`."""
        return cls(
            available=level.available,
            held=level.held,
            committed=level.committed,
            shipped=level.shipped,
            damaged=level.damaged,
            writtenOff=level.written_off,
            onHand=level.on_hand,
        )


class StockEntryPublic(BaseModel):
    """One change of stock: `quantity` units of a product moved `from` one state `to` another."""

    id: int = Field(description="The journal's order; pass the last one as `after` for more.")
    at: dt.datetime
    productId: uuid.UUID | None  # noqa: N815 (None: the product is gone)
    sku: str
    location: str
    reason: StockReason
    reference: str | None = Field(
        description="The reservation, shipment, cancellation or return that moved the units."
    )
    orderId: str | None  # noqa: N815
    actor: str | None = Field(description="Who made the change (`admin:<id>`, a shopper's id).")
    quantity: int
    source: StockState | None = Field(
        serialization_alias="from",
        description="Where the units were (null: outside, e.g. stock added).",
    )
    target: StockState | None = Field(
        serialization_alias="to",
        description="Where they went (null: out of the shop, e.g. stock taken off).",
    )
    before: StockQuantitiesPublic
    after: StockQuantitiesPublic

    @classmethod
    def of(cls, entry: StockEntry, product_id: uuid.UUID | None) -> Self:
        """The public view of `entry`."""
        return cls(
            id=entry.id,
            at=entry.at,
            productId=product_id,
            sku=entry.sku,
            location=entry.location,
            reason=entry.reason,
            reference=entry.reference,
            orderId=entry.order_id,
            actor=entry.actor,
            quantity=entry.quantity,
            source=entry.source,
            target=entry.target,
            before=StockQuantitiesPublic.of(entry.before),
            after=StockQuantitiesPublic.of(entry.after),
        )


class StockAlertPut(BaseModel):
    """``PUT /api/v1/inventory/{productId}/alert`` (admins only): a low-stock threshold."""

    model_config = ConfigDict(extra="forbid")

    low: Annotated[int, Field(ge=0, le=MAX_UNITS, strict=True)] | None = Field(
        description="Announce `stock.low` at this many available units or fewer (null: never)."
    )
    location: LocationName = Field(default=DEFAULT_LOCATION, description="Where it counts.")


class StockAlertPublic(BaseModel):
    """A product's low-stock threshold at a location (`low` null: none)."""

    productId: uuid.UUID  # noqa: N815
    location: str
    low: int | None
