"""``/api/v1/orders``: a shopper's orders; the shipments, cancellations and returns of admins."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from commercekit.errors import (
    CancellationConflict,
    OrderNotFound,
    OverCancellation,
    OverFulfilment,
    OverReturn,
    OverShipped,
    ReturnConflict,
    ShipmentConflict,
)
from commercekit.orders import Order, ReturnRequest, ShipmentRequest
from reference_app.common import AdminUser, ApiError, CurrentUser
from reference_app.common.errors import errors
from reference_app.inventory.deps import InventoryServices, ServicesDep, known_location
from reference_app.inventory.schemas import (
    CancellationPost,
    CancellationPublic,
    OrderPublic,
    ReturnPost,
    ReturnPublic,
    ShipmentItem,
    ShipmentPost,
    ShipmentPublic,
)

__all__ = ["router"]

log = logging.getLogger("reference_app.inventory")
router = APIRouter(prefix="/api/v1/orders", tags=["orders"], responses=errors(400, 401, 422, 503))

OrderId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


async def _order(services: InventoryServices, order_id: str) -> Order:
    try:
        return await services.orders.get(order_id)
    except OrderNotFound:
        raise ApiError(404, f"order {order_id} not found", code="order_not_found") from None


async def _public(services: InventoryServices, order: Order) -> OrderPublic:
    products = await services.products.by_skus(line.sku for line in order.lines)
    return OrderPublic.of(order, {sku: product.id for sku, product in products.items()})


@router.get("")
async def list_orders(
    services: ServicesDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[OrderPublic]:
    """The caller's orders, oldest first: each paid reservation's units, until they ship."""
    orders = await services.orders.of_owner(user.user_id, limit=limit, offset=offset)
    return [await _public(services, order) for order in orders]


@router.get("/{order_id}", responses=errors(404))
async def get_order(order_id: OrderId, services: ServicesDep, user: CurrentUser) -> OrderPublic:
    """One of the caller's orders (404 for anyone else's)."""
    order = await _order(services, order_id)
    if order.owner != user.user_id:
        raise ApiError(404, f"order {order_id} not found", code="order_not_found")
    return await _public(services, order)


@router.post(
    "/{order_id}/shipments",
    status_code=status.HTTP_201_CREATED,
    responses=errors(
        403, 404, 409,
        s409="more units than the order still commits there, or a shipment id used "
        "for another shipment",
    ),
)  # fmt: skip
async def ship_order(
    order_id: OrderId, body: ShipmentPost, services: ServicesDep, admin: AdminUser
) -> ShipmentPublic:
    """Ship units of an order (admins only), exactly once per ``shipmentId``.

    Each item ships from the location the order holds it at (name the
    ``location`` where it holds the product at several). The same
    ``shipmentId`` again is answered with the shipment it made.
    """
    order = await _order(services, order_id)
    lines, by_sku = await _lines(services, body.items)
    try:
        shipment = await services.orders.ship(order.id, body.shipmentId, lines)
    except OverFulfilment as exc:
        raise ApiError(
            409,
            "the order does not commit these units",
            code="over_fulfilment",
            details=_over(exc.over, by_sku),
        ) from None
    except ShipmentConflict:
        raise ApiError(
            409, f"shipment {body.shipmentId} was made for other lines", code="shipment_conflict"
        ) from None
    log.info(
        "shipped %s of order %s",
        shipment.id,
        order.id,
        extra={"order": order.id, "shipment": shipment.id, "by": admin.user_id},
    )
    return ShipmentPublic.of(shipment, by_sku)


@router.post(
    "/{order_id}/cancellations",
    status_code=status.HTTP_201_CREATED,
    responses=errors(
        403, 404, 409,
        s409="more units than the order still commits there (or none left), or a "
        "cancellation id used for another cancellation",
    ),
)  # fmt: skip
async def cancel_order(
    order_id: OrderId, body: CancellationPost, services: ServicesDep, admin: AdminUser
) -> CancellationPublic:
    """Cancel units of an order not shipped yet (admins only), exactly once per id.

    Without ``items``, every unit the order still commits. The units go back
    on sale at the locations they were held at. The same ``cancellationId``
    again is answered with the cancellation it made.
    """
    order = await _order(services, order_id)
    if body.items is None:
        lines: list[ShipmentRequest] | None = None
        found = await services.products.by_skus(line.sku for line in order.lines)
        by_sku = {sku: product.id for sku, product in found.items()}
    else:
        lines, by_sku = await _lines(services, body.items)
    try:
        cancellation = await services.orders.cancel(order.id, body.cancellationId, lines)
    except OverCancellation as exc:
        raise ApiError(
            409,
            str(exc) if not exc.over else "the order does not commit these units",
            code="over_cancellation",
            details=_over(exc.over, by_sku),
        ) from None
    except CancellationConflict:
        raise ApiError(
            409,
            f"cancellation {body.cancellationId} was made for other lines",
            code="cancellation_conflict",
        ) from None
    log.info(
        "cancelled %s of order %s",
        cancellation.id,
        order.id,
        extra={"order": order.id, "cancellation": cancellation.id, "by": admin.user_id},
    )
    return CancellationPublic.of(cancellation, by_sku)


@router.post(
    "/{order_id}/returns",
    status_code=status.HTTP_201_CREATED,
    responses=errors(
        403, 404, 409,
        s409="more units than were shipped and not returned yet, or a return id used for "
        "another return",
    ),
)  # fmt: skip
async def receive_return(
    order_id: OrderId, body: ReturnPost, services: ServicesDep, admin: AdminUser
) -> ReturnPublic:
    """Receive shipped units of an order back (admins only), exactly once per id.

    Each item's ``restock`` says what becomes of its units: ``RESELL`` puts
    them back on sale where they shipped from (or at ``restockAt``, another
    location: the return came in there), ``DAMAGED`` keeps them on
    hand there but never for sale, ``NONE`` writes them off. What they were
    paid is refunded (the payment service makes the refund). The same
    ``returnId`` again is answered with the return it made.
    """
    order = await _order(services, order_id)
    shipped, by_sku = await _lines(services, body.items)
    lines: list[ReturnRequest] = []
    for line, item in zip(shipped, body.items, strict=True):
        at = line[2] if len(line) == 3 else None
        if item.restockAt is not None:
            await known_location(services, item.restockAt)
            lines.append((line[0], line[1], item.restock, at, item.restockAt))
        else:
            lines.append(
                (line[0], line[1], item.restock)
                if at is None
                else (line[0], line[1], item.restock, at)
            )

    try:
        made = await services.orders.receive_return(order.id, body.returnId, lines)
    except OverReturn as exc:
        raise ApiError(
            409,
            "the order did not ship these units, or they came back already",
            code="over_return",
            details=_over(exc.over, by_sku),
        ) from None
    except ReturnConflict:
        raise ApiError(
            409, f"return {body.returnId} was received for other lines", code="return_conflict"
        ) from None
    log.info(
        "received return %s of order %s",
        made.id,
        order.id,
        extra={"order": order.id, "return": made.id, "by": admin.user_id},
    )
    return ReturnPublic.of(made, by_sku)


async def _lines(
    services: InventoryServices, items: Sequence[ShipmentItem]
) -> tuple[list[ShipmentRequest], dict[str, uuid.UUID]]:
    """The items as the order book's lines (404 for an unknown product), and SKU -> product."""
    products = await services.products.by_ids(item.productId for item in items)
    missing = sorted(str(i.productId) for i in items if i.productId not in products)
    if missing:
        raise ApiError(404, f"unknown product: {', '.join(missing)}", code="product_not_found")
    lines: list[ShipmentRequest] = [
        (products[item.productId].sku, item.quantity)
        if item.location is None
        else (products[item.productId].sku, item.quantity, item.location)
        for item in items
    ]
    return lines, {product.sku: product.id for product in products.values()}


def _over(over: tuple[OverShipped, ...], by_sku: dict[str, uuid.UUID]) -> list[dict[str, object]]:
    return [
        {"productId": str(by_sku[o.sku]) if o.sku in by_sku else None, "location": o.location,
         "committed": o.committed, "requested": o.requested}
        for o in over
    ]  # fmt: skip
