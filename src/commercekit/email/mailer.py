"""`Mailer`: the transactional mails, rendered and sent with a deterministic idempotency key.

```python
mailer = Mailer(ResendSender(ResendSettings()), shop_name="Acme", sender="Acme <shop@acme.test>")
await mailer.welcome("ada@example.com", username="ada", idempotency_key=event.id)
```

An event consumer maps each event to one call and passes the event's id as
`idempotency_key`: the sender is then asked for mail ``<template>/<event id>``
however often the event is delivered, and the provider sends it once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from commercekit.email.sender import EmailMessage, EmailSender
from commercekit.email.templates import TemplateRenderer
from commercekit.errors import ConfigurationError

__all__ = ["Mailer", "format_amount"]

_MAX_KEY_LENGTH = 200


def format_amount(amount: Decimal | int | str, currency: str) -> str:
    """``Decimal("12.5"), "EUR"`` -> ``"12.50 EUR"`` (amounts in major units)."""
    return f"{Decimal(amount):.2f} {currency.upper()}"


class Mailer:
    """Renders and sends commercekit's transactional mails.

    Args:
        sender: the `EmailSender` that delivers them.
        renderer: the templates; the built-in ones by default.
        sender_address: the ``From`` of every mail; the sender's default when None.
        shop_name: shown in subjects, bodies and footers.
        support_email: shown in footers, if set.
    """

    def __init__(
        self,
        sender: EmailSender,
        *,
        renderer: TemplateRenderer | None = None,
        sender_address: str | None = None,
        shop_name: str = "Our shop",
        support_email: str | None = None,
    ) -> None:
        self.sender = sender
        self.renderer = renderer or TemplateRenderer()
        self.sender_address = sender_address
        self._defaults = {"shop_name": shop_name, "support_email": support_email}

    async def send(
        self, template: str, to: str, context: Mapping[str, Any], *, idempotency_key: str
    ) -> str:
        """Render mail `template` with `context` and send it to `to`; the provider's id.

        The sender gets the key ``<template>/<idempotency_key>``, so one
        event may cause several different mails, each sent at most once.
        """
        if not idempotency_key or len(idempotency_key) > _MAX_KEY_LENGTH:
            raise ConfigurationError(f"idempotency_key must be 1 to {_MAX_KEY_LENGTH} characters")
        rendered = self.renderer.render(template, {**self._defaults, **context})
        message = EmailMessage(
            to=(to,),
            subject=rendered.subject,
            html=rendered.html,
            text=rendered.text,
            sender=self.sender_address,
            tags={"template": template},
        )
        return await self.sender.send(message, idempotency_key=f"{template}/{idempotency_key}")

    async def welcome(self, to: str, *, username: str, idempotency_key: str) -> str:
        """The mail after signup."""
        return await self.send(
            "welcome", to, {"username": username}, idempotency_key=idempotency_key
        )

    async def payment_succeeded(
        self,
        to: str,
        *,
        reservation_id: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        name: str | None = None,
    ) -> str:
        """The mail after a payment confirmed a reservation."""
        context = _payment(reservation_id, amount, currency, name)
        return await self.send("payment_succeeded", to, context, idempotency_key=idempotency_key)

    async def payment_failed(
        self,
        to: str,
        *,
        reservation_id: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        reason: str | None = None,
        name: str | None = None,
    ) -> str:
        """The mail after a payment failed (the reservation's stock is released)."""
        context = {**_payment(reservation_id, amount, currency, name), "reason": reason}
        return await self.send("payment_failed", to, context, idempotency_key=idempotency_key)

    async def refund_issued(
        self,
        to: str,
        *,
        reservation_id: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        reason: str | None = None,
        name: str | None = None,
    ) -> str:
        """The mail after a refund (a late payment for an expired reservation, say)."""
        context = {**_payment(reservation_id, amount, currency, name), "reason": reason}
        return await self.send("refund_issued", to, context, idempotency_key=idempotency_key)

    async def order_shipped(
        self,
        to: str,
        *,
        order_id: str,
        lines: Sequence[tuple[str, int]],
        complete: bool,
        idempotency_key: str,
        name: str | None = None,
    ) -> str:
        """The mail of a shipment: its `lines` (``(sku, quantity)``); `complete` for the last."""
        context = _order(order_id, lines, complete, name)
        return await self.send("order_shipped", to, context, idempotency_key=idempotency_key)

    async def order_cancelled(
        self,
        to: str,
        *,
        order_id: str,
        lines: Sequence[tuple[str, int]],
        complete: bool,
        idempotency_key: str,
        name: str | None = None,
    ) -> str:
        """The mail of a cancellation: its `lines`; `complete` if the whole order is cancelled."""
        context = _order(order_id, lines, complete, name)
        return await self.send("order_cancelled", to, context, idempotency_key=idempotency_key)


def _order(
    order_id: str, lines: Sequence[tuple[str, int]], complete: bool, name: str | None
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "lines": [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        "complete": complete,
        "name": name,
    }


def _payment(
    reservation_id: str, amount: Decimal, currency: str, name: str | None
) -> dict[str, Any]:
    return {
        "reservation_id": reservation_id,
        "amount": format_amount(amount, currency),
        "name": name,
    }
