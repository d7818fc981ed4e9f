"""Every hook commercekit calls, with its signature and when it runs.

Implement a hook in any module or object, mark it with
`commercekit.plugins.hookimpl`, and register it, or publish it under the
``commercekit`` entry-point group::

    # pyproject.toml of the package commercekit-audit
    [project.entry-points.commercekit]
    audit = "commercekit_audit"

    # commercekit_audit.py
    from commercekit.plugins import hookimpl

    @hookimpl
    def commercekit_reservation_expired(reservation):
        audit_log.write(f"hold {reservation.id} expired")

Notification hooks (past tense) run after the fact; an exception in one is
logged and does not undo or block anything. Decision hooks return a value
and stop at the first plugin that returns one (``firstresult``);
commercekit's own default runs last, so your plugin wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from commercekit.email.templates import RenderedEmail
    from commercekit.events.envelope import Envelope
    from commercekit.payments.models import Payment, PaymentCase, RefundDecision
    from commercekit.reservations.locations import Channel
    from commercekit.reservations.models import Reservation, ReservationLine

PROJECT = "commercekit"
"""The pluggy project name, and the entry-point group plugins are found under."""

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ------------------------------------------------------------ reservations
@hookspec
def commercekit_reservation_created(reservation: Reservation) -> None:
    """A reservation was made: its stock is held until `reservation.expires_at`.

    Called once per reservation (an idempotent replay does not call it
    again), after its record is written.
    """


@hookspec
def commercekit_reservation_confirmed(reservation: Reservation) -> None:
    """A reservation was confirmed (paid): its units are sold. Called once."""


@hookspec
def commercekit_reservation_released(reservation: Reservation) -> None:
    """A reservation was released (cancelled): its units are available again. Called once."""


@hookspec
def commercekit_reservation_expired(reservation: Reservation) -> None:
    """A reservation passed its deadline unpaid: its units are available again.

    Called once, by whichever process expired it (a sweeper, or a late
    confirm, release or extend that found the deadline past).
    """


@hookspec(firstresult=True)
def commercekit_allocation_order(
    lines: tuple[ReservationLine, ...], channel: Channel, owner: str
) -> list[str] | None:
    """Choose the order of the channel's locations for this cart (None: the channel's own).

    Asked by `DurableReservations.reserve` before a cart is reserved in a
    `channel`: return some of the channel's location names, first choice
    first (the warehouse nearest the shopper's address, say); locations left
    out are not used for this cart. Allocation then takes the locations in
    that order (`Strategy.PRIORITY`), with the channel's split rule and
    safety stocks, in the same atomic step as ever.
    """


# ---------------------------------------------------------------- payments
@hookspec
def commercekit_payment_outcome(payment: Payment) -> None:
    """A payment event was settled: `payment.status` says whether the money was taken.

    Called once per payment event a `PaymentSettlement` processes (a
    redelivered event does not call it again), after its effects are
    committed: the reservation confirmed or released, any refund recorded.
    """


@hookspec(firstresult=True)
def commercekit_refund_decision(case: PaymentCase) -> RefundDecision | None:
    """Decide what a payment with an issue gets: refund all, the difference, or accept.

    `case.issue` says what is wrong (the reservation expired, was released,
    is unknown, was already paid, or the amount differs from
    `case.expected`); `case.reservation` is its current state (None when
    unknown). Return a `RefundDecision` with a reason, or None to leave the
    case to the next plugin. Your plugins decide first, then the policy a
    `PaymentSettlement` was given (``policy=``), then commercekit's
    `DefaultRefundPolicy`, registered ``trylast``.
    """


# ------------------------------------------------------------------ events
@hookspec
def commercekit_event_published(event: Envelope[Any]) -> None:
    """The broker acknowledged `event` (an `ObservedEventBus` published it)."""


@hookspec
def commercekit_event_consumed(event: Envelope[Any], group: str) -> None:
    """Consumer `group`'s handler finished `event` without error.

    Called after the effect, before the offset is committed: a redelivered
    event that an idempotent handler skips is reported again.
    """


# ------------------------------------------------------------------- email
@hookspec(firstresult=True)
def commercekit_email_template(name: str, context: Mapping[str, Any]) -> RenderedEmail | None:
    """Render the transactional mail `name` yourself, or return None.

    `name` is one of ``welcome``, ``payment_succeeded``, ``payment_failed``,
    ``refund_issued``; `context` holds the values the templates use. The
    first plugin to return a `RenderedEmail` wins; escaping user-provided
    values is then that plugin's job. Return None to leave the mail to the
    next plugin, and finally to commercekit's own templates.
    """
