"""``/api/v1/products`` (public) and ``/api/v1/inventory/*``: products, stock, reservations."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.exc import IntegrityError

from commercekit.auth import Principal
from commercekit.errors import (
    HoldExpired,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    OutOfStock,
    PurchaseLimitExceeded,
    ReservationNotFound,
    StockConflict,
)
from commercekit.reservations import (
    DEFAULT_LOCATION,
    Channel,
    LocationName,
    PurchaseLimit,
    Reservation,
    StockReason,
)
from reference_app.common import AdminUser, ApiError, CurrentUser
from reference_app.common.errors import errors
from reference_app.common.identity import (
    IDEMPOTENCY_HEADER,
    IDEMPOTENCY_KEY_PATTERN,
    MAX_IDEMPOTENCY_KEY,
    current_user,
    scoped_key,
    valid_idempotency_key,
)
from reference_app.common.lean import JSON_TYPE, LeanRoute
from reference_app.common.money import MAX_AMOUNT
from reference_app.inventory.deps import (
    InventoryServices,
    ProductInfo,
    ServicesDep,
    get_services,
    known_location,
)
from reference_app.inventory.models import Product, SalesChannel, StockLocation
from reference_app.inventory.schemas import (
    BackorderPut,
    CartLine,
    ChannelPublic,
    ChannelPut,
    KitPublic,
    KitPut,
    LocationPublic,
    LocationPut,
    LocationStockPublic,
    LocationStockPut,
    ProductCreate,
    ProductPublic,
    PurchaseLimitPublic,
    PurchaseLimitPut,
    ReservationPublic,
    ReserveRequest,
    ReserveResponse,
    RestockRequest,
    StockAlertPublic,
    StockAlertPut,
    StockEntryPublic,
)

__all__ = ["LEAN_ROUTES", "router"]

log = logging.getLogger("reference_app.inventory")
router = APIRouter(prefix="/api/v1", responses=errors(400, 422, 503))

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        min_length=1,
        max_length=MAX_IDEMPOTENCY_KEY,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Repeat a reserve safely: the same key returns the same reservation.",
    ),
]

ReservationId = Annotated[str, Path(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")]

ChannelQuery = Annotated[
    LocationName | None,
    Query(description="A sales channel: the units it can sell (its locations, less safety stock)."),
]


_LISTED = (Product.id, Product.sku, Product.name, Product.price)
"""The columns a product list needs (plain rows: no ORM objects to build)."""

_PAGE = (
    select(*_LISTED, func.count().over().label("total"))
    .order_by(Product.created_at, Product.id)
    .limit(bindparam("limit"))
    .offset(bindparam("offset"))
)
"""A page of products, built once (SQLAlchemy caches its compiled form by this object)."""

_COUNT = select(func.count()).select_from(Product)


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


async def _product(services: InventoryServices, product_id: uuid.UUID) -> ProductInfo:
    """The product `product_id`; 404 for an unknown one."""
    product = (await services.products.by_ids([product_id])).get(product_id)
    if product is None:
        raise ApiError(404, f"product {product_id} not found", code="product_not_found")
    return product


async def _channel(services: InventoryServices, name: str | None) -> Channel | None:
    """The channel `name` (None for none); 404 for an unknown one."""
    if name is None:
        return None
    channel = await services.channels.get(name)
    if channel is None:
        raise ApiError(404, f"channel {name} not found", code="channel_not_found")
    return channel


async def _product_ids(
    services: InventoryServices, reservation: Reservation, known: dict[str, uuid.UUID]
) -> dict[str, uuid.UUID]:
    """`known`, and the products of the reservation's other SKUs (a kit's components)."""
    skus = {line.sku for line in reservation.lines} | {a.sku for a in reservation.allocations}
    missing = skus - known.keys()
    if not missing:
        return known
    found = await services.products.by_skus(missing)
    return {**known, **{sku: product.id for sku, product in found.items()}}


async def _view(services: InventoryServices, reservation: Reservation) -> ReservationPublic:
    return ReservationPublic.of(reservation, await _product_ids(services, reservation, {}))


async def _cart(
    services: InventoryServices, body: ReserveRequest
) -> tuple[list[CartLine], dict[uuid.UUID, ProductInfo]]:
    """The request's lines and their products.

    404 for an unknown product, 422 for a cart no single payment could cover
    (it would be held, then never paid).
    """
    lines = body.lines()
    products = await services.products.by_ids(line.productId for line in lines)
    missing = sorted(str(line.productId) for line in lines if line.productId not in products)
    if missing:
        raise ApiError(404, f"unknown product: {', '.join(missing)}", code="product_not_found")
    total = sum((products[line.productId].price * line.quantity for line in lines), Decimal(0))
    if total > MAX_AMOUNT:
        raise ApiError(
            422,
            f"the cart totals {total}, more than the largest payable amount, {MAX_AMOUNT}",
            code="cart_total_too_large",
            details={"total": str(total), "maximum": str(MAX_AMOUNT)},
        )
    return lines, products


def _refusal(
    services: InventoryServices, exc: Exception, products: dict[uuid.UUID, ProductInfo]
) -> ApiError:
    """The 409 of a cart the store refused: short, over a limit, or a reused key."""
    by_sku = {product.sku: str(product.id) for product in products.values()}
    if isinstance(exc, OutOfStock):
        services.outcomes.labels("out_of_stock").inc()
        short = [
            {"productId": by_sku.get(s.sku), "requested": s.requested, "available": s.available}
            for s in exc.short
        ]
        return ApiError(409, "out of stock", code="out_of_stock", details=short)
    if isinstance(exc, PurchaseLimitExceeded):
        services.outcomes.labels("limited").inc()
        over = [
            {"productId": by_sku.get(o.sku), "sku": o.sku, "limit": o.limit, "used": o.used,
             "requested": o.requested}
            for o in exc.over
        ]  # fmt: skip
        return ApiError(409, "purchase limit reached", code="purchase_limit", details=over)
    services.outcomes.labels("conflict").inc()
    return ApiError(
        409, "this Idempotency-Key was used for another cart", code="idempotency_conflict"
    )


# ------------------------------------------------------------------ products
@router.get("/products", tags=["products"])
async def list_products(
    services: ServicesDep,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    channel: ChannelQuery = None,
) -> list[ProductPublic]:
    """Products, oldest first, with the units available now; ``X-Total-Count`` has the total."""
    selling = await _channel(services, channel)
    async with services.engine.connect() as conn:
        # One round trip, no BEGIN and ROLLBACK around it: the page's rows,
        # each with the count of all products.
        reading = await conn.execution_options(isolation_level="AUTOCOMMIT")
        rows = (await reading.execute(_PAGE, {"limit": limit, "offset": offset})).all()
        if rows:
            total = rows[0].total
        else:  # a page past the end has no row to carry the count
            total = await reading.scalar(_COUNT)
    products = [ProductInfo(id=r.id, sku=r.sku, name=r.name, price=r.price) for r in rows]
    available = await services.reservations.available([p.sku for p in products], channel=selling)
    response.headers["X-Total-Count"] = str(total or 0)
    currency = services.settings.currency
    return [_public(p, available.get(p.sku, 0), currency) for p in products]


@router.get("/products/{product_id}", tags=["products"], responses=errors(404))
async def get_product(
    product_id: uuid.UUID, services: ServicesDep, channel: ChannelQuery = None
) -> ProductPublic:
    """One product with the units available now (in a channel, if one is named)."""
    selling = await _channel(services, channel)
    product = await _product(services, product_id)
    available = await services.reservations.available([product.sku], channel=selling)
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
    """Add units to a product's stock (admins only), at a location if one is named."""
    product = await _product(services, product_id)
    location = body.location or DEFAULT_LOCATION
    await known_location(services, location)
    level = await services.reservations.restock(product.sku, body.quantity, location=location)
    log.info(
        "restocked",
        extra={"sku": product.sku, "added": body.quantity, "at": location, "by": admin.user_id},
    )
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
        s409="not enough stock for some line (nothing held), a purchase limit, or a reused key",
        s422="invalid body, or a cart totalling more than the largest payable amount",
    ),
)
async def reserve(
    body: ReserveRequest,
    services: ServicesDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> ReserveResponse:
    """Hold the units of every line until ``expiresAt``, all or nothing.

    In a ``channel``, the lines are allocated to its locations by its rules
    (``allocations`` says where); without one, at the default location.
    """
    return await _reserve(services, user, body, idempotency_key)


async def _reserve(
    services: InventoryServices, user: Principal, body: ReserveRequest, idempotency_key: str | None
) -> ReserveResponse:
    selling = await _channel(services, body.channel)
    lines, products = await _cart(services, body)
    try:
        reservation = await services.reservations.reserve(
            [(products[line.productId].sku, line.quantity) for line in lines],
            ttl=services.settings.reservation_ttl_seconds,
            owner=user.user_id,
            idempotency_key=None
            if idempotency_key is None
            else scoped_key(user.user_id, idempotency_key),
            channel=selling,
        )
    except (OutOfStock, PurchaseLimitExceeded, IdempotencyConflict) as exc:
        raise _refusal(services, exc, products) from None
    services.outcomes.labels("held").inc()
    product_ids = {products[line.productId].sku: line.productId for line in lines}
    if reservation.allocations:  # a kit's components are products of their own
        product_ids = await _product_ids(services, reservation, product_ids)
    return ReserveResponse.of(
        reservation, product_ids, message="stock reserved", reservationId=reservation.id
    )


_RESERVE_BODY = TypeAdapter(ReserveRequest)


async def lean_reserve(request: Request, body: bytes) -> Response | None:
    """`reserve`, answered by `LEAN_ROUTES` without FastAPI's per-request work.

    The same checks in the same order (the caller, then the key and the
    body); a key or a body that does not validate is left to `reserve`,
    which explains it.
    """
    user = await current_user(request)
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not valid_idempotency_key(key):
        return None
    try:
        cart = _RESERVE_BODY.validate_json(body)
    except ValidationError:
        return None
    answer = await _reserve(await get_services(request), user, cart, key)
    return Response(answer.model_dump_json(), status.HTTP_201_CREATED, media_type=JSON_TYPE)


LEAN_ROUTES = (LeanRoute("POST", "/api/v1/inventory/reserve", lean_reserve),)
"""The routes the service answers without FastAPI's per-request work (the reserve)."""


@router.get(
    "/inventory/reservations/{reservation_id}", tags=["reservations"], responses=errors(401, 404)
)
async def get_reservation(
    reservation_id: ReservationId, services: ServicesDep, user: CurrentUser
) -> ReservationPublic:
    """One of the caller's reservations (404 for anyone else's)."""
    return await _view(services, await _owned(services, reservation_id, user.user_id))


@router.put(
    "/inventory/reservations/{reservation_id}",
    tags=["reservations"],
    responses=errors(
        401, 404, 409,
        s409="not enough stock for the new lines (nothing changed), a purchase limit, "
        "a reused key, or no longer PENDING",
    ),
)  # fmt: skip
async def amend_reservation(
    reservation_id: ReservationId,
    body: ReserveRequest,
    services: ServicesDep,
    user: CurrentUser,
    idempotency_key: IdempotencyKey = None,
) -> ReservationPublic:
    """Make one of the caller's PENDING reservations hold the new cart, keeping what it holds.

    Only the difference moves: units already held stay held (nobody else can
    take them meanwhile); if the new cart does not fit, nothing changes.
    """
    await _owned(services, reservation_id, user.user_id)
    selling = await _channel(services, body.channel)
    lines, products = await _cart(services, body)
    try:
        reservation = await services.reservations.amend(
            reservation_id,
            [(products[line.productId].sku, line.quantity) for line in lines],
            idempotency_key=None
            if idempotency_key is None
            else scoped_key(user.user_id, idempotency_key),
            channel=selling,
        )
    except (OutOfStock, PurchaseLimitExceeded, IdempotencyConflict) as exc:
        raise _refusal(services, exc, products) from None
    except HoldExpired:
        raise ApiError(409, "the reservation has expired", code="reservation_expired") from None
    except InvalidTransition as exc:
        state = exc.reservation.status.value.lower()
        raise ApiError(
            409, f"the reservation is {state}: it cannot be changed", code="not_pending"
        ) from None
    except InvalidRequest as exc:  # a cart the store cannot amend in place
        raise ApiError(409, str(exc), code="cannot_amend") from None
    services.outcomes.labels("amended").inc()
    return await _view(services, reservation)


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


# ---------------------------------------------------------- locations
# Last: FastAPI tries routes in order, and these admin routes are rare (the reserve
# path is tried first).
@router.put(
    "/inventory/locations/{name}",
    tags=["locations"],
    responses=errors(401, 403, 409, s409="the default location's name"),
)
async def put_location(
    name: Annotated[LocationName, Path()],
    body: LocationPut,
    services: ServicesDep,
    admin: AdminUser,
) -> LocationPublic:
    """Create a stock location, or change its label (admins only)."""
    if name == DEFAULT_LOCATION:
        raise ApiError(409, f"{DEFAULT_LOCATION} is every store's own location", code="reserved")
    async with services.sessions() as session, session.begin():
        location = await session.get(StockLocation, name)
        if location is None:
            session.add(StockLocation(name=name, label=body.label))
        else:
            location.label = body.label
    log.info("location saved", extra={"location": name, "by": admin.user_id})
    return LocationPublic(name=name, label=body.label)


@router.get("/inventory/locations", tags=["locations"], responses=errors(401, 403))
async def list_locations(services: ServicesDep, admin: AdminUser) -> list[LocationPublic]:
    """Every stock location an admin created, by name (admins only)."""
    async with services.sessions() as session:
        rows = await session.scalars(select(StockLocation).order_by(StockLocation.name))
        return [LocationPublic(name=row.name, label=row.label) for row in rows]


@router.put(
    "/inventory/{product_id}/stock/{location}",
    tags=["locations"],
    responses=errors(401, 403, 404, 409, s409="fewer units than are held there"),
)
async def put_location_stock(
    product_id: uuid.UUID,
    location: Annotated[LocationName, Path()],
    body: LocationStockPut,
    services: ServicesDep,
    admin: AdminUser,
) -> LocationStockPublic:
    """Make `onHand` units of a product exist at a location (admins only); holds are kept."""
    product = await _product(services, product_id)
    await known_location(services, location)
    try:
        level = await services.reservations.set_stock(product.sku, body.onHand, location=location)
    except StockConflict as exc:
        raise ApiError(409, str(exc), code="below_held") from None
    log.info(
        "stock set",
        extra={"sku": product.sku, "at": location, "on_hand": body.onHand, "by": admin.user_id},
    )
    return LocationStockPublic.of(level)


@router.put(
    "/inventory/{product_id}/backorder/{location}",
    tags=["locations"],
    responses=errors(401, 403, 404, 409, s409="more units are owed there than the new cap"),
)
async def put_backorder(
    product_id: uuid.UUID,
    location: Annotated[LocationName, Path()],
    body: BackorderPut,
    services: ServicesDep,
    admin: AdminUser,
) -> LocationStockPublic:
    """Let up to `cap` units of a product be held beyond its stock at a location (admins only)."""
    product = await _product(services, product_id)
    await known_location(services, location)
    try:
        level = await services.reservations.set_backorder(product.sku, body.cap, location=location)
    except StockConflict as exc:
        raise ApiError(409, str(exc), code="below_owed") from None
    log.info(
        "backorder cap set",
        extra={"sku": product.sku, "at": location, "cap": body.cap, "by": admin.user_id},
    )
    return LocationStockPublic.of(level)


@router.get("/inventory/{product_id}/stock", tags=["locations"], responses=errors(401, 403, 404))
async def get_location_stock(
    product_id: uuid.UUID, services: ServicesDep, admin: AdminUser
) -> list[LocationStockPublic]:
    """A product's available, held and sold units at every location (admins only)."""
    product = await _product(services, product_id)
    levels = await services.reservations.stock_by_location(product.sku)
    return [LocationStockPublic.of(level) for level in levels.values()]


@router.get("/inventory/journal", tags=["inventory"], responses=errors(401, 403, 404))
async def get_journal(  # noqa: PLR0917 (one query parameter per filter)
    services: ServicesDep,
    admin: AdminUser,
    productId: Annotated[uuid.UUID | None, Query()] = None,  # noqa: N803
    location: Annotated[LocationName | None, Query()] = None,
    reference: Annotated[str | None, Query(min_length=1, max_length=140)] = None,
    orderId: Annotated[str | None, Query(min_length=1, max_length=64)] = None,  # noqa: N803
    reason: Annotated[StockReason | None, Query()] = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[StockEntryPublic]:
    """The stock journal, oldest first (admins only): every change of stock, and why.

    Each entry moves units of a product at a location between states
    (available, held, committed, shipped, damaged, written off), with its
    reason, the reservation, shipment, cancellation or return behind it,
    who made it, and the levels before and after. The filters combine; the
    next page is ``after`` the last entry's ``id``.
    """
    sku = None if productId is None else (await _product(services, productId)).sku
    entries = await services.reservations.journal(
        sku=sku,
        location=location,
        reference=reference,
        order_id=orderId,
        reason=reason,
        after=after,
        limit=limit,
    )
    products = await services.products.by_skus({entry.sku for entry in entries})
    return [
        StockEntryPublic.of(entry, None if entry.sku not in products else products[entry.sku].id)
        for entry in entries
    ]


@router.put("/inventory/{product_id}/alert", tags=["inventory"], responses=errors(401, 403, 404))
async def put_stock_alert(
    product_id: uuid.UUID, body: StockAlertPut, services: ServicesDep, admin: AdminUser
) -> StockAlertPublic:
    """Announce ``stock.low`` when a product falls to `low` available units (admins only).

    The worker announces ``stock.low``, ``stock.out`` and ``stock.back_in``
    (and ``stock.adjusted`` for each change by hand) from the stock journal.
    """
    product = await _product(services, product_id)
    await known_location(services, body.location)
    await services.watch.set_threshold(product.sku, body.low, location=body.location)
    log.info(
        "stock alert saved",
        extra={"sku": product.sku, "at": body.location, "low": body.low, "by": admin.user_id},
    )
    return StockAlertPublic(productId=product.id, location=body.location, low=body.low)


@router.put("/inventory/channels/{name}", tags=["locations"], responses=errors(401, 403, 404))
async def put_channel(
    name: Annotated[LocationName, Path()], body: ChannelPut, services: ServicesDep, admin: AdminUser
) -> ChannelPublic:
    """Create or change a sales channel: its locations, first choice first, and its rules."""
    for place in body.locations:
        await known_location(services, place.location)
    values = {
        "locations": [[p.location, p.safetyStock] for p in body.locations],
        "strategy": body.strategy.value,
        "split": body.split.value,
    }
    async with services.sessions() as session, session.begin():
        row = await session.get(SalesChannel, name)
        if row is None:
            session.add(SalesChannel(name=name, **values))
        else:
            for key, value in values.items():
                setattr(row, key, value)
    await services.channels.refresh()
    log.info("channel saved", extra={"channel": name, "by": admin.user_id})
    return ChannelPublic(name=name, **body.model_dump())


@router.get("/inventory/channels", tags=["locations"], responses=errors(401, 403))
async def list_channels(services: ServicesDep, admin: AdminUser) -> list[ChannelPublic]:
    """Every sales channel, by name (admins only)."""
    return [ChannelPublic.of(channel) for channel in await services.channels.all()]


# ---------------------------------------------------------- purchase limits
@router.put("/inventory/{product_id}/limit", tags=["inventory"], responses=errors(401, 403, 404))
async def put_purchase_limit(
    product_id: uuid.UUID, body: PurchaseLimitPut, services: ServicesDep, admin: AdminUser
) -> PurchaseLimitPublic:
    """Let one shopper hold or buy at most `quantity` units within the window (admins only)."""
    product = await _product(services, product_id)
    window = dt.timedelta(seconds=body.windowSeconds)
    limit = await services.reservations.set_purchase_limit(
        product.sku, body.quantity, window=window
    )
    log.info(
        "purchase limit set",
        extra={"sku": product.sku, "limit": body.quantity, "by": admin.user_id},
    )
    return _limit_view(product.id, limit)


@router.get("/inventory/{product_id}/limit", tags=["inventory"], responses=errors(401, 403, 404))
async def get_purchase_limit(
    product_id: uuid.UUID, services: ServicesDep, admin: AdminUser
) -> PurchaseLimitPublic:
    """A product's purchase limit (admins only; `quantity` 0 when it has none)."""
    product = await _product(services, product_id)
    return _limit_view(product.id, await services.reservations.purchase_limit(product.sku))


def _limit_view(product_id: uuid.UUID, limit: PurchaseLimit | None) -> PurchaseLimitPublic:
    if limit is None:
        return PurchaseLimitPublic(productId=product_id, quantity=0, windowSeconds=None)
    seconds = int(limit.window.total_seconds())
    return PurchaseLimitPublic(productId=product_id, quantity=limit.quantity, windowSeconds=seconds)


# ------------------------------------------------------------------- kits
@router.put(
    "/inventory/{product_id}/kit",
    tags=["kits"],
    responses=errors(401, 403, 404, 409, s409="a component is a kit, or the product a component"),
)
async def put_kit(
    product_id: uuid.UUID, body: KitPut, services: ServicesDep, admin: AdminUser
) -> KitPublic:
    """Make a product a kit of other products, or change what it is made of (admins only).

    Reserving the kit holds its components; its stock is what they make.
    """
    product = await _product(services, product_id)
    wanted = [part.productId for part in body.components]
    parts = await services.products.by_ids(wanted)
    missing = sorted(str(i) for i in wanted if i not in parts)
    if missing:
        raise ApiError(404, f"unknown product: {', '.join(missing)}", code="product_not_found")
    if len(set(wanted)) != len(wanted):
        raise ApiError(400, "each component may be named once", code="invalid_kit")
    if product_id in parts:
        raise ApiError(400, "a kit cannot be a component of itself", code="invalid_kit")
    try:
        kit = await services.reservations.define_kit(
            product.sku, [(parts[part.productId].sku, part.quantity) for part in body.components]
        )
    except InvalidRequest as exc:  # a kit of kits, or a component made a kit
        raise ApiError(409, str(exc), code="kit_nesting") from None
    log.info("kit saved", extra={"sku": product.sku, "v": kit.version, "by": admin.user_id})
    return KitPublic.of(product.id, kit, {p.sku: p.id for p in parts.values()})


@router.get("/inventory/{product_id}/kit", tags=["kits"], responses=errors(401, 403, 404))
async def get_kit(product_id: uuid.UUID, services: ServicesDep, admin: AdminUser) -> KitPublic:
    """What a kit product is made of (admins only); 404 if it is no kit."""
    product = await _product(services, product_id)
    kit = (await services.reservations.kits()).get(product.sku)
    if kit is None:
        raise ApiError(404, f"product {product.id} is not a kit", code="kit_not_found")
    found = await services.products.by_skus(part.sku for part in kit.components)
    return KitPublic.of(product.id, kit, {sku: p.id for sku, p in found.items()})


@router.delete(
    "/inventory/{product_id}/kit",
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["kits"],
    responses=errors(401, 403, 404),
)
async def delete_kit(product_id: uuid.UUID, services: ServicesDep, admin: AdminUser) -> None:
    """Make a kit a plain product again (admins only); holds made with it keep their units."""
    product = await _product(services, product_id)
    if not await services.reservations.remove_kit(product.sku):
        raise ApiError(404, f"product {product.id} is not a kit", code="kit_not_found")
    log.info("kit removed", extra={"sku": product.sku, "by": admin.user_id})
