"""``/api/v1/products`` (public) and ``/api/v1/inventory/*``: products, stock, reservations."""

from __future__ import annotations

import logging
import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError

from commercekit.errors import (
    HoldExpired,
    IdempotencyConflict,
    InvalidTransition,
    OutOfStock,
    ReservationNotFound,
)
from commercekit.reservations import Reservation
from reference_app.common import AdminUser, ApiError, CurrentUser
from reference_app.common.errors import errors
from reference_app.common.identity import MAX_IDEMPOTENCY_KEY, scoped_key
from reference_app.common.money import MAX_AMOUNT
from reference_app.inventory.deps import InventoryServices, ProductInfo, ServicesDep
from reference_app.inventory.models import Product
from reference_app.inventory.schemas import (
    ProductCreate,
    ProductPublic,
    ReservationPublic,
    ReserveRequest,
    ReserveResponse,
    RestockRequest,
)

__all__ = ["router"]

log = logging.getLogger("reference_app.inventory")
router = APIRouter(prefix="/api/v1", responses=errors(400, 422, 503))

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a reserve safely: the same key returns the same reservation.",
    ),
]

ReservationId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]


_LISTED = (Product.id, Product.sku, Product.name, Product.price)
"""The columns a product list needs (plain rows: no ORM objects to build)."""


def _public(product: Product | ProductInfo, available: int, currency: str) -> ProductPublic:
    return ProductPublic(
        id=product.id,
        sku=product.sku,
        name=product.name,
        price=product.price,
        currency=currency,
        stock=available,
    )


async def _owned(services: InventoryServices, reservation_id: str, user_id: str) -> Reservation:
    """The caller's reservation; 404 for an unknown one and for someone else's alike."""
    try:
        reservation = await services.reservations.get(reservation_id)
    except ReservationNotFound:
        reservation = None
    if reservation is None or reservation.owner != user_id:
        raise ApiError(404, f"reservation {reservation_id} not found", code="reservation_not_found")
    return reservation


async def _view(services: InventoryServices, reservation: Reservation) -> ReservationPublic:
    products = await services.products.by_skus(line.sku for line in reservation.lines)
    return ReservationPublic.of(reservation, {sku: p.id for sku, p in products.items()})


# ------------------------------------------------------------------ products
@router.get("/products", tags=["products"])
async def list_products(
    services: ServicesDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[ProductPublic]:
    """Products, oldest first, with the units available now; ``X-Total-Count`` has the total."""
    page = (
        select(*_LISTED, func.count().over().label("total"))
        .order_by(Product.created_at, Product.id)
        .limit(limit)
        .offset(offset)
    )
    async with services.sessions() as session:
        # One round trip: the page's rows, each with the count of all products.
        rows = (await session.execute(page)).all()
        if rows:
            total = rows[0].total
        else:  # a page past the end has no row to carry the count
            total = await session.scalar(select(func.count()).select_from(Product))
    products = [ProductInfo(id=r.id, sku=r.sku, name=r.name, price=r.price) for r in rows]
    available = await services.reservations.available([p.sku for p in products])
    response.headers["X-Total-Count"] = str(total or 0)
    currency = services.settings.currency
    return [_public(p, available.get(p.sku, 0), currency) for p in products]


@router.get("/products/{product_id}", tags=["products"], responses=errors(404))
async def get_product(product_id: uuid.UUID, services: ServicesDep) -> ProductPublic:
    """One product with the units available now."""
    product = (await services.products.by_ids([product_id])).get(product_id)
    if product is None:
        raise ApiError(404, f"product {product_id} not found", code="product_not_found")
    available = await services.reservations.available([product.sku])
    return _public(product, available.get(product.sku, 0), services.settings.currency)


@router.post(
    "/inventory",
    status_code=status.HTTP_201_CREATED,
    tags=["inventory"],
    responses=errors(401, 403, 409, s409="the SKU exists"),
)
async def create_product(
    body: ProductCreate, services: ServicesDep, admin: AdminUser
) -> ProductPublic:
    """Create a product and its stock (admins only); 409 if the SKU exists."""
    product = Product(sku=body.sku, name=body.name, price=body.price)
    async with services.sessions() as session, session.begin():
        session.add(product)
        try:
            await session.flush()
        except IntegrityError:
            raise ApiError(409, f"SKU {body.sku} exists already", code="sku_taken") from None
    # The product row is committed first (SQLite, in the demo, has one writer
    # at a time, and the ledger writes on its own connection), then its stock;
    # if the stock cannot be set, the product goes again.
    try:
        level = await services.reservations.set_stock(body.sku, body.stock)
    except BaseException:
        async with services.sessions() as session, session.begin():
            await session.execute(delete(Product).where(Product.id == product.id))
        raise
    log.info("product created", extra={"sku": body.sku, "stock": body.stock, "by": admin.user_id})
    return _public(product, level.available, services.settings.currency)


@router.post("/inventory/{product_id}/restock", tags=["inventory"], responses=errors(401, 403, 404))
async def restock(
    product_id: uuid.UUID, body: RestockRequest, services: ServicesDep, admin: AdminUser
) -> ProductPublic:
    """Add units to a product's stock (admins only)."""
    product = (await services.products.by_ids([product_id])).get(product_id)
    if product is None:
        raise ApiError(404, f"product {product_id} not found", code="product_not_found")
    level = await services.reservations.restock(product.sku, body.quantity)
    log.info("restocked", extra={"sku": product.sku, "added": body.quantity, "by": admin.user_id})
    return _public(product, level.available, services.settings.currency)


# -------------------------------------------------------------- reservations
@router.post(
    "/inventory/reserve",
    status_code=status.HTTP_201_CREATED,
    tags=["reservations"],
    responses=errors(
        401,
        404,
        409,
        422,
        s409="not enough stock for some line (nothing held), or a reused key",
        s422="invalid body, or a cart totalling more than the largest payable amount",
    ),
)
async def reserve(
    body: ReserveRequest,
    services: ServicesDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> ReserveResponse:
    """Hold the units of every line until ``expiresAt``, all or nothing."""
    lines = body.lines()
    products = await services.products.by_ids(line.productId for line in lines)
    missing = sorted(str(line.productId) for line in lines if line.productId not in products)
    if missing:
        raise ApiError(404, f"unknown product: {', '.join(missing)}", code="product_not_found")
    # A cart no single payment could cover would be held, then never paid.
    total = sum((products[line.productId].price * line.quantity for line in lines), Decimal(0))
    if total > MAX_AMOUNT:
        raise ApiError(
            422,
            f"the cart totals {total}, more than the largest payable amount, {MAX_AMOUNT}",
            code="cart_total_too_large",
            details={"total": str(total), "maximum": str(MAX_AMOUNT)},
        )
    try:
        reservation = await services.reservations.reserve(
            [(products[line.productId].sku, line.quantity) for line in lines],
            ttl=services.settings.reservation_ttl_seconds,
            owner=user.user_id,
            idempotency_key=None
            if idempotency_key is None
            else scoped_key(user.user_id, idempotency_key),
        )
    except OutOfStock as exc:
        services.outcomes.labels("out_of_stock").inc()
        by_sku = {product.sku: str(product.id) for product in products.values()}
        short = [
            {"productId": by_sku[s.sku], "requested": s.requested, "available": s.available}
            for s in exc.short
        ]
        raise ApiError(409, "out of stock", code="out_of_stock", details=short) from None
    except IdempotencyConflict:
        services.outcomes.labels("conflict").inc()
        raise ApiError(
            409,
            "this Idempotency-Key was used for another cart",
            code="idempotency_conflict",
        ) from None
    services.outcomes.labels("held").inc()
    product_ids = {products[line.productId].sku: line.productId for line in lines}
    return ReserveResponse.of(
        reservation, product_ids, message="stock reserved", reservationId=reservation.id
    )


@router.get(
    "/inventory/reservations/{reservation_id}", tags=["reservations"], responses=errors(401, 404)
)
async def get_reservation(
    reservation_id: ReservationId, services: ServicesDep, user: CurrentUser
) -> ReservationPublic:
    """One of the caller's reservations (404 for anyone else's)."""
    return await _view(services, await _owned(services, reservation_id, user.user_id))


@router.post(
    "/inventory/reservations/{reservation_id}/cancel",
    tags=["reservations"],
    responses=errors(401, 404, 409, s409="no longer PENDING"),
)
async def cancel_reservation(
    reservation_id: ReservationId, services: ServicesDep, user: CurrentUser
) -> ReservationPublic:
    """Release one of the caller's PENDING reservations: its units become available again."""
    await _owned(services, reservation_id, user.user_id)
    try:
        reservation = await services.reservations.release(reservation_id)
    except HoldExpired:
        raise ApiError(409, "the reservation has expired", code="reservation_expired") from None
    except InvalidTransition as exc:
        state = exc.reservation.status.value.lower()
        raise ApiError(
            409, f"the reservation is {state}: it cannot be cancelled", code="not_pending"
        ) from None
    services.outcomes.labels("cancelled").inc()
    return await _view(services, reservation)
