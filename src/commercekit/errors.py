"""Every exception commercekit raises, in one tree.

```
CommerceKitError
├── ConfigurationError        a setting or an argument is unusable
├── MissingExtraError         an optional dependency is not installed (also an ImportError)
├── InvalidRequest            bad input, refused before any backend is touched (a ValueError)
├── BackendUnavailable        Redis, PostgreSQL or Kafka cannot be reached now: retry later
│   ├── RedisDataLost         Redis lost its reservation data; the ledger must restore it
│   ├── UnsupportedRecordVersion  a newer release wrote this hold's record (a rolling deploy)
│   └── NotReplicated         Redis did not copy a write to enough replicas in time
└── ReservationError
    ├── OutOfStock            some lines cannot be held; .short names them
    ├── ReservationNotFound   no reservation has this id
    ├── InvalidTransition     the reservation is already CONFIRMED, RELEASED or EXPIRED
    │   └── HoldExpired           its deadline had passed: this call expired it
    ├── IdempotencyConflict   the idempotency key was used for another cart
    └── StockConflict         a stock change would leave a SKU negative or below its holds
```

The event contracts and buses (see `commercekit.events`) add:

```
CommerceKitError
└── EventError
    ├── MalformedEvent        not JSON, not an envelope, or a payload that breaks its schema
    │   ├── UnknownEventType          the type is not in the catalog
    │   └── UnsupportedSchemaVersion  newer than the payload model this process knows
    ├── PublishError          the broker did not acknowledge an event (also a BackendUnavailable)
    └── NotReadyYet           a handler waits for another event first: park it, try again later
```

Email (see `commercekit.email`) and auth (see `commercekit.auth`) add:

```
CommerceKitError
├── EmailError
│   ├── EmailDeliveryError    the provider did not take the mail (retries exhausted); retry later
│   │   └── EmailRejected     the provider refused it for good (a 4xx other than 429)
│   └── TemplateError         an email template is missing or cannot render
└── AuthError
    ├── InvalidToken          an access token is malformed, forged, or for another issuer/audience
    │   └── TokenExpired      ... or past its expiry
    ├── InvalidRefreshToken   no refresh token matches (unknown, or its family is revoked)
    │   ├── RefreshTokenExpired   the refresh token (or its family) is past its lifetime
    │   └── RefreshTokenReused    a rotated token came back: its whole family is now revoked
    └── WeakSecret            a signing secret or key is too weak (also a ConfigurationError)
```

Orders (see `commercekit.orders`) add:

```
CommerceKitError
└── OrderError
    ├── OrderNotFound         no order has this id
    ├── OverFulfilment        a shipment names more units than the order still commits; .over
    ├── ShipmentConflict      the shipment id was used for other lines or another order
    ├── OverCancellation      a cancellation names more units than the order still commits
    ├── CancellationConflict  the cancellation id was used for other lines or another order
    ├── OverReturn            a return names more units than shipped and not returned yet
    └── ReturnConflict        the return id was used for other lines or another order
```

Payments and refunds (see `commercekit.payments`) add:

```
CommerceKitError
└── PaymentError
    ├── PaymentDeclined       the processor refused the charge; .payment is the FAILED payment
    ├── PaymentConflict       the idempotency key was used with another body (not a second charge)
    ├── ProcessorUnavailable  the processor failed or cannot be reached (also a BackendUnavailable)
    ├── RefundError           the processor did not refund; the refund stays REQUESTED, retry it
    └── OverRefund            a refund would take the payment's refunds past what was paid
```

The test harness adds its own branch (see `commercekit.testing.servers`):

```
CommerceKitError
└── ServerError
    ├── ServerNotAvailable    a server's binary or jars are not installed here
    └── ServerStartError      the server was found but did not become ready
```

Catch `CommerceKitError` to handle anything the library raises on purpose.
Whether a failure (one of these, or a driver's own error that reached you)
is worth waiting out is `commercekit.transient.is_transient`'s to say: it
knows `BackendUnavailable` and every way Redis, PostgreSQL and Kafka refuse
for now.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes

if TYPE_CHECKING:
    from commercekit.payments.models import Payment
    from commercekit.reservations.models import Reservation

__all__ = [
    "AuthError",
    "BackendUnavailable",
    "CancellationConflict",
    "CommerceKitError",
    "ConfigurationError",
    "EmailDeliveryError",
    "EmailError",
    "EmailRejected",
    "EventError",
    "HoldExpired",
    "IdempotencyConflict",
    "InvalidRefreshToken",
    "InvalidRequest",
    "InvalidToken",
    "InvalidTransition",
    "MalformedEvent",
    "MissingExtraError",
    "NotReadyYet",
    "NotReplicated",
    "OrderError",
    "OrderNotFound",
    "OutOfStock",
    "OverCancellation",
    "OverFulfilment",
    "OverLimit",
    "OverRefund",
    "OverReturn",
    "OverShipped",
    "PaymentConflict",
    "PaymentDeclined",
    "PaymentError",
    "ProcessorUnavailable",
    "PublishError",
    "PurchaseLimitExceeded",
    "RedisDataLost",
    "RefreshTokenExpired",
    "RefreshTokenReused",
    "RefundError",
    "ReservationError",
    "ReservationNotFound",
    "ReturnConflict",
    "ShipmentConflict",
    "ShortLine",
    "StockConflict",
    "TemplateError",
    "TokenExpired",
    "UnknownEventType",
    "UnsupportedRecordVersion",
    "UnsupportedSchemaVersion",
    "WeakSecret",
]


class CommerceKitError(Exception):
    """Base class of every exception raised by commercekit on purpose."""


class ConfigurationError(CommerceKitError, ValueError):
    """A setting or an argument cannot be used as given."""


class MissingExtraError(CommerceKitError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, extra: str, module: str) -> None:
        self.extra = extra
        self.module = module
        super().__init__(
            f'{module} needs an optional dependency: pip install "commercekit[{extra}]"'
        )


class InvalidRequest(CommerceKitError, ValueError):
    """The input is not valid (a zero quantity, an empty cart...); nothing was changed."""


class BackendUnavailable(CommerceKitError):
    """A backing service (Redis, PostgreSQL, Kafka) cannot be reached; retry later.

    Whatever the call was doing was either not done at all or fully undone.
    """


class RedisDataLost(BackendUnavailable):
    """Redis was flushed or restarted empty; a guarded store refuses to act on it.

    `commercekit.reservations.DurableReservations` restores it from the
    PostgreSQL ledger and retries; nothing was changed.
    """


class UnsupportedRecordVersion(BackendUnavailable):
    """A newer release wrote this reservation's Redis record; this one leaves it alone.

    Met only during a rolling deploy, when replicas of two releases share a
    Redis: nothing was changed, and the call succeeds once it reaches a
    replica of the newer release (so it is a `BackendUnavailable`: retry).
    Records of older releases are always read.

    Attributes:
        reservation_id: the reservation whose record it is.
        version: the record's version.
        supported: the newest version this release reads.
    """

    def __init__(self, reservation_id: str, version: int, supported: int) -> None:
        super().__init__(
            f"reservation {reservation_id} has a record of version {version}, newer than "
            f"this release reads ({supported}): retry once the deploy is complete"
        )
        self.reservation_id = reservation_id
        self.version = version
        self.supported = supported


class NotReplicated(BackendUnavailable):
    """A write reached the Redis master, but not enough replicas in time: not acknowledged.

    Raised by a `RedisReservationStore` created with ``replicas=`` when
    ``WAIT`` reports fewer replicas than asked for. The master made the
    write, and a failover could lose it, so it is not acknowledged: a
    reserve's hold is released and a restock or adjust is undone (best
    effort, on the master); a refused confirm, release or extend is one a
    retry finds made (or makes), and a refused `set_stock` is made again.
    While a master's replicas are down, every write to it is refused this
    way.

    Attributes:
        replicas: how many replicas had the write when the wait ended.
        wanted: how many the store asks for.
    """

    def __init__(self, message: str, *, replicas: int, wanted: int) -> None:
        super().__init__(message)
        self.replicas = replicas
        self.wanted = wanted


# ---------------------------------------------------------------- reservations


class ReservationError(CommerceKitError):
    """Base class of the reservation store's domain errors."""


@dataclass(frozen=True, slots=True)
class ShortLine:
    """A cart line that cannot be held: how many were wanted, how many are available."""

    sku: str
    requested: int
    available: int


class OutOfStock(ReservationError):
    """Some lines of the cart cannot be held; nothing was reserved."""

    def __init__(self, short: tuple[ShortLine, ...]) -> None:
        self.short = short
        names = ", ".join(f"{s.sku} (wanted {s.requested}, available {s.available})" for s in short)
        super().__init__(f"out of stock: {names}")


@dataclass(frozen=True, slots=True)
class OverLimit:
    """A SKU the owner may not take this many of.

    Its limit, what the owner holds or bought within the limit's window, and
    what this cart wanted.
    """

    sku: str
    limit: int
    used: int
    requested: int


class PurchaseLimitExceeded(ReservationError):
    """The cart would take some SKUs beyond the owner's purchase limit; nothing was reserved."""

    def __init__(self, over: tuple[OverLimit, ...]) -> None:
        self.over = over
        names = ", ".join(
            f"{o.sku} (limit {o.limit}, holds or bought {o.used}, wanted {o.requested})"
            for o in over
        )
        super().__init__(f"purchase limit reached: {names}")


class ReservationNotFound(ReservationError, LookupError):
    """No reservation has this id (or its record is past retention)."""

    def __init__(self, reservation_id: str) -> None:
        self.reservation_id = reservation_id
        super().__init__(f"reservation {reservation_id} not found")


class InvalidTransition(ReservationError):
    """The reservation is no longer PENDING, so `action` cannot apply to it.

    `reservation` is its current state (CONFIRMED, RELEASED or EXPIRED).
    """

    def __init__(self, reservation: Reservation, action: str) -> None:
        self.reservation = reservation
        self.action = action
        super().__init__(
            f"cannot {action} reservation {reservation.id}: it is {reservation.status.value}"
        )


class HoldExpired(InvalidTransition):
    """The reservation's deadline had passed, so this call expired it instead.

    Its stock went back to available; report the expiry as the sweeper would
    (with the `commercekit.events.ReservationExpired` event). This exception
    was called ``ReservationExpired`` before; that name still works for a
    release, with a `DeprecationWarning`.
    """


class IdempotencyConflict(ReservationError):
    """The idempotency key already names a reservation for a different cart."""

    def __init__(self, idempotency_key: str, reservation_id: str) -> None:
        self.idempotency_key = idempotency_key
        self.reservation_id = reservation_id
        super().__init__(
            f"idempotency key {idempotency_key!r} was used for another cart "
            f"(reservation {reservation_id})"
        )


class StockConflict(ReservationError):
    """The stock change would make available stock negative or drop below the held units."""


# ---------------------------------------------------------------- payments


class PaymentError(CommerceKitError):
    """Base class of the payment processors' and the refunds' errors."""


class PaymentDeclined(PaymentError):
    """The processor refused the charge (a declined card, insufficient funds...).

    `payment` is the FAILED payment, with its `failure_code` and `failure_message`.
    """

    def __init__(self, payment: Payment) -> None:
        self.payment = payment
        super().__init__(
            f"payment {payment.id} declined: {payment.failure_code} ({payment.failure_message})"
        )


class PaymentConflict(PaymentError):
    """The idempotency key was already used with a different body; nothing was charged.

    Retrying the *same* request with the key is safe and returns the first answer.
    """

    def __init__(self, idempotency_key: str) -> None:
        self.idempotency_key = idempotency_key
        super().__init__(
            f"idempotency key {idempotency_key!r} was already used for a different request"
        )


class ProcessorUnavailable(PaymentError, BackendUnavailable):
    """The payment processor failed or could not be reached; retry with the same key."""


class RefundError(PaymentError):
    """The processor did not make the refund; the refund stays REQUESTED and can be retried."""


class OverRefund(PaymentError):
    """A refund would take a payment's refunds past what was paid; it was not recorded.

    `refundable` is what the payment's earlier refunds leave of it. The
    transaction the refund was asked in must be rolled back.
    """

    def __init__(self, payment_id: str, amount: Decimal, refundable: Decimal) -> None:
        self.payment_id = payment_id
        self.amount = amount
        self.refundable = refundable
        super().__init__(
            f"payment {payment_id} has {refundable} left to refund: a refund of {amount} "
            "would exceed what was paid"
        )


# ---------------------------------------------------------------- email


class EmailError(CommerceKitError):
    """Base class of the email senders' and templates' errors."""


class EmailDeliveryError(EmailError):
    """The email provider did not take the mail, after every retry the policy allowed.

    Sending again later with the same idempotency key is safe: the provider
    delivers at most one mail per key. `status` is the provider's last HTTP
    status (None for a connection error), `attempts` how many requests were made.
    """

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        self.status = status
        self.attempts = attempts
        super().__init__(message)


class EmailRejected(EmailDeliveryError):
    """The provider refused the mail (a 4xx other than 429): retrying cannot help."""


class TemplateError(EmailError):
    """An email template is missing, or it failed to render with the given values."""


# ---------------------------------------------------------------- auth


class AuthError(CommerceKitError):
    """Base class of the authentication errors; none says more than needed to the client."""


class InvalidToken(AuthError):
    """The access token is missing, malformed, forged, or not for this issuer or audience."""


class TokenExpired(InvalidToken):
    """The access token was genuine but is past its expiry: refresh it."""


class InvalidRefreshToken(AuthError):
    """No usable refresh token matches: it is unknown, or its family was revoked."""


class RefreshTokenExpired(InvalidRefreshToken):
    """The refresh token (or its family's absolute lifetime) has expired: sign in again."""


class RefreshTokenReused(InvalidRefreshToken):
    """A refresh token that was already rotated came back, so its whole family is revoked.

    Either the token was stolen or two clients raced with it; every token of
    the family (the newest too) stops working. `family_id` names the family.
    """

    def __init__(self, family_id: str) -> None:
        self.family_id = family_id
        super().__init__(f"refresh token reused: family {family_id} revoked")


class WeakSecret(AuthError, ConfigurationError):
    """A signing secret or key is too short, a known default, or the wrong kind of key."""


# ---------------------------------------------------------------- events


class EventError(CommerceKitError):
    """Base class of the event contracts' and the event buses' errors."""


class MalformedEvent(EventError, ValueError):
    """The bytes are not a valid event of the catalog; consumers dead-letter them.

    `reason` says what is wrong, in one line.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class UnknownEventType(MalformedEvent):
    """The event's type is not in the catalog this process knows."""

    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(f"unknown event type {event_type!r}")


class UnsupportedSchemaVersion(MalformedEvent):
    """The event's schema version is newer than the payload model this process knows.

    Deploy consumers before producers: a consumer reads every older version.
    """

    def __init__(self, event_type: str, version: int, supported: int) -> None:
        self.event_type = event_type
        self.version = version
        self.supported = supported
        super().__init__(
            f"{event_type} schema version {version} is newer than the supported {supported}"
        )


class PublishError(EventError, BackendUnavailable):
    """The broker did not acknowledge an event; it may or may not have been written.

    Publishing again is safe: consumers deduplicate by event id.
    """


class NotReadyYet(EventError):
    """A handler cannot handle the event yet: it waits for another event (of another topic).

    Raise it from a handler when the event depends on one that has not
    arrived (a payment of a user whose ``user.created`` is still on its
    way). The bus parks the event, goes on with its other partitions, and
    delivers it again with growing pauses; if it is still not ready after
    `wait` seconds in all, it goes to the dead-letter topic, saying so.

    Args:
        message: what the event waits for.
        wait: how long the event may wait in all, in seconds; the bus's
            own bound (``not_ready_wait``) when None.
    """

    def __init__(self, message: str, *, wait: float | None = None) -> None:
        self.wait = wait
        super().__init__(message)


# ---------------------------------------------------------------- old names

__getattr__ = lazy_attributes(__name__, renamed={"ReservationExpired": "HoldExpired"})

if TYPE_CHECKING:
    ReservationExpired = HoldExpired  # deprecated: the old name of HoldExpired


class OrderError(CommerceKitError):
    """Base class of the orders' domain errors (`commercekit.orders`)."""


class OrderNotFound(OrderError, LookupError):
    """No order has this id."""

    def __init__(self, order_id: str) -> None:
        self.order_id = order_id
        super().__init__(f"order {order_id} not found")


@dataclass(frozen=True, slots=True)
class OverShipped:
    """A line of a shipment (or a cancellation) beyond what the order still commits there."""

    sku: str
    location: str
    committed: int
    requested: int


class OverFulfilment(OrderError):
    """A shipment names more units than the order still commits; nothing was shipped.

    `over` names each SKU and location, what the order still commits there
    (0 for one the order does not hold there) and what the shipment asked for.
    """

    def __init__(self, order_id: str, over: tuple[OverShipped, ...]) -> None:
        self.order_id = order_id
        self.over = over
        names = ", ".join(
            f"{o.sku} at {o.location} (committed {o.committed}, shipping {o.requested})"
            for o in over
        )
        super().__init__(f"order {order_id} does not commit these units: {names}")


class ShipmentConflict(OrderError):
    """The shipment id is taken by another shipment (other lines, or another order)."""

    def __init__(self, shipment_id: str, order_id: str) -> None:
        self.shipment_id = shipment_id
        self.order_id = order_id
        super().__init__(f"shipment {shipment_id} was already made for other lines of {order_id}")


class OverCancellation(OrderError):
    """A cancellation names more units than the order still commits; nothing was cancelled.

    `over` names each SKU and location, what the order still commits there
    and what the cancellation asked for; it is empty when nothing at all is
    left to cancel (every unit shipped or cancelled).
    """

    def __init__(self, order_id: str, over: tuple[OverShipped, ...]) -> None:
        self.order_id = order_id
        self.over = over
        names = ", ".join(
            f"{o.sku} at {o.location} (committed {o.committed}, cancelling {o.requested})"
            for o in over
        )
        super().__init__(
            f"order {order_id} does not commit these units: {names}"
            if over
            else f"order {order_id} has no unit left to cancel"
        )


class CancellationConflict(OrderError):
    """The cancellation id is taken by another cancellation (other lines, or another order)."""

    def __init__(self, cancellation_id: str, order_id: str) -> None:
        self.cancellation_id = cancellation_id
        self.order_id = order_id
        super().__init__(
            f"cancellation {cancellation_id} was already made for other lines of {order_id}"
        )


class OverReturn(OrderError):
    """A return names more units than were shipped and not returned yet; nothing was received.

    `over` names each SKU and location, the units shipped from there and not
    returned yet (as `committed`) and what the return asked for.
    """

    def __init__(self, order_id: str, over: tuple[OverShipped, ...]) -> None:
        self.order_id = order_id
        self.over = over
        names = ", ".join(
            f"{o.sku} at {o.location} (returnable {o.committed}, returning {o.requested})"
            for o in over
        )
        super().__init__(f"order {order_id} did not ship these units: {names}")


class ReturnConflict(OrderError):
    """The return id is taken by another return (other lines, or another order)."""

    def __init__(self, return_id: str, order_id: str) -> None:
        self.return_id = return_id
        self.order_id = order_id
        super().__init__(f"return {return_id} was already received for other lines of {order_id}")
