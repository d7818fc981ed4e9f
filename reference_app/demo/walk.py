"""The guided walk ``commercekit demo`` plays against itself, over HTTP, as a client would.

signup (an admin and a shopper) → login → the admin creates a product → the
shopper reserves → pays → the payment is confirmed and its mail goes out;
the order ships in two parcels, and one mug comes back, refunded; then the
late-payment refund: a second hold expires (or, with long holds, is
cancelled), the shopper pays it anyway, and the payment is refunded, with
its mail.

The walk sees the mails through the email service's own counter,
``refapp_email_sent_total{template=...}`` on ``/metrics``; the mails
themselves are printed by the email service's console sender.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TextIO, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from commercekit.reservations import DEFAULT_LOCATION

__all__ = ["SHORT_TTL_SECONDS", "Walk", "WalkError", "play"]

SHORT_TTL_SECONDS = 20
"""Holds this short are left to expire (the sweeper's work); longer ones are cancelled."""

PRICE = Decimal("12.50")
STOCK = 10
STORE = DEFAULT_LOCATION
"""Where the mug's first stock is (the product's own location)."""
PASSWORD = "demo-password-1"  # noqa: S105 (a demo account on a throw-away database)

T = TypeVar("T")


class WalkError(Exception):
    """A step of the walk did not go as expected."""


@dataclass
class Walk:
    """One guided walk against the app at `base_url`.

    Args:
        client: an HTTP client whose ``base_url`` is the app.
        admin_email: an address listed in ``ADMIN_EMAILS``.
        reservation_ttl: the app's ``RESERVATION_TTL_SECONDS``.
        sweep_interval: the app's ``SWEEP_INTERVAL_SECONDS``.
        out: where the walk is told.
        max_wait: seconds to wait for each asynchronous outcome (plus the hold's
            lifetime when waiting for an expiry).
    """

    client: httpx.AsyncClient
    admin_email: str
    reservation_ttl: float
    sweep_interval: float
    out: TextIO = field(default_factory=lambda: sys.stdout)
    max_wait: float = 30.0
    current: int = field(default=0, init=False)
    """The number of the step being played."""

    # ------------------------------------------------------------ telling
    def say(self, text: str = "") -> None:
        """Print a line of the walk."""
        print(text, file=self.out, flush=True)

    def step(self, title: str) -> None:
        """Start the next numbered step."""
        self.current += 1
        self.say(f"\n[{self.current}] {title}")

    def detail(self, text: str) -> None:
        """An indented line under the current step."""
        self.say(f"    {text}")

    # ------------------------------------------------------------ HTTP
    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: dict[str, Any] | None = None,
        expect: tuple[int, ...] = (200,),
        quiet: bool = False,
    ) -> httpx.Response:
        """Make one request, print it with its status; `WalkError` on another status."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.request(method, path, json=body, headers=headers)
        if not quiet or response.status_code not in expect:
            self.detail(f"{method} {path} -> {response.status_code}")
        if response.status_code not in expect:
            raise WalkError(
                f"{method} {path} answered {response.status_code}, expected "
                f"{' or '.join(map(str, expect))}: {_error_text(response)}"
            )
        return response

    async def until(
        self, what: str, probe: Callable[[], Awaitable[T | None]], *, max_wait: float | None = None
    ) -> T:
        """Poll `probe` until it returns something; `WalkError` after `max_wait` seconds."""
        limit = self.max_wait if max_wait is None else max_wait
        deadline = time.monotonic() + limit
        while True:
            value = await probe()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise WalkError(f"gave up after {limit:.0f} s waiting until {what}")
            await asyncio.sleep(0.2)

    async def mails_sent(self, template: str) -> int:
        """How many mails of `template` the email service has sent (its ``/metrics`` counter)."""
        response = await self.client.get("/metrics")
        response.raise_for_status()
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if (
                    sample.name == "refapp_email_sent_total"
                    and sample.labels.get("template") == template
                ):
                    return int(sample.value)
        return 0

    async def mail_went_out(self, template: str, before: int, to: str) -> None:
        """Wait until one more `template` mail than `before` was sent."""

        async def sent() -> int | None:
            count = await self.mails_sent(template)
            return count if count > before else None

        await self.until(f"the {template} mail is sent", sent)
        self.detail(f"{template.replace('_', ' ')} email sent to {to} (printed above)")

    # ------------------------------------------------------------ the story
    async def play(self) -> None:
        """Play the whole walk; raises `WalkError` (or an HTTP error) at the first failure."""
        suffix = uuid.uuid4().hex[:6]
        shopper_email = f"ada-{suffix}@example.com"
        admin, shopper = await self.sign_up_and_log_in(suffix, shopper_email)
        product_id = await self.create_product(suffix, admin, shopper)
        order_id = await self.buy(shopper, shopper_email, product_id)
        await self.ship_in_parts(admin, shopper, order_id, product_id)
        await self.send_back(admin, shopper, shopper_email, order_id, product_id)
        await self.read_journal(admin, order_id)
        await self.pay_late(shopper, shopper_email, product_id)
        await self.two_warehouses(suffix, admin, shopper, product_id)
        await self.gift_box(suffix, admin, shopper, product_id)

        self.step("Stock after the walk")
        listed = (await self.call("GET", "/api/v1/products")).json()
        mug = next((p for p in listed if p["id"] == product_id), None)
        if mug is None:
            raise WalkError(f"product {product_id} is not listed")
        self.detail(
            f"{mug['name']}: {mug['stock']} of {STOCK} available "
            "(2 sold, 1 of them returned and on sale again)"
        )

    async def sign_up_and_log_in(self, suffix: str, shopper_email: str) -> tuple[str, str]:
        """Sign up the admin and a shopper, log both in; their access tokens."""
        welcomes = await self.mails_sent("welcome")
        self.step("Sign up an admin and a shopper")
        signed_up = 0
        for username, address in (
            (f"admin-{suffix}", self.admin_email),
            (f"ada-{suffix}", shopper_email),
        ):
            response = await self.call(
                "POST",
                "/api/v1/auth/signup",
                body={"username": username, "email": address, "password": PASSWORD},
                expect=(201, 409),
            )
            if response.status_code == 201:
                signed_up += 1
                self.detail(f"{address}: user created")
            else:
                self.detail(f"{address} has an account already; signing in to it")
        if signed_up:
            await self.mail_went_out("welcome", welcomes + signed_up - 1, "each new user")

        self.step("Log in (access token in the answer, refresh token in an httpOnly cookie)")
        admin = await self.login(self.admin_email)
        shopper = await self.login(shopper_email)
        role = (await self.call("GET", "/api/v1/auth/me", token=admin)).json()["role"]
        if role != "admin":
            raise WalkError(f"{self.admin_email} has the role {role!r}, not admin")
        self.detail(f"{self.admin_email} has the admin role (ADMIN_EMAILS)")
        return admin, shopper

    async def create_product(self, suffix: str, admin: str, shopper: str) -> str:
        """The admin creates the mug; the shopper and strangers may not. The product id."""
        self.step("The admin creates a product; the gateway guards the route")
        product = (
            await self.call(
                "POST",
                "/api/v1/inventory",
                token=admin,
                body={
                    "sku": f"DEMO-MUG-{suffix.upper()}",
                    "name": "commercekit demo mug",
                    "price": str(PRICE),
                    "stock": STOCK,
                },
                expect=(201,),
            )
        ).json()
        product_id: str = product["id"]
        self.detail(f"product {product_id}: {product['name']}, {PRICE} each, stock {STOCK}")
        await self.call(
            "POST",
            "/api/v1/inventory",
            token=shopper,
            body={"sku": f"NOPE-{suffix}", "name": "nope", "price": "1", "stock": 1},
            expect=(403,),
        )
        self.detail("the shopper may not create products: 403")
        await self.call("GET", "/api/v1/payment/whatever", expect=(401,))
        self.detail("no token, no access: 401 from the gateway")
        return product_id

    async def buy(self, shopper: str, shopper_email: str, product_id: str) -> str:
        """Reserve two mugs, pay, see the payment confirmed and its mail sent; the order's id."""
        self.step("The shopper reserves 2 mugs and pays for them")
        reservation_id = await self.reserve(shopper, product_id, 2)
        paid = await self.mails_sent("payment_succeeded")
        await self.pay(shopper, reservation_id, PRICE * 2)
        state = await self.payment_reaches(shopper, reservation_id, "confirmed")
        self.detail(f"payment confirmed: {state['amount']} {state['currency']}")
        reservation = await self.call(
            "GET", f"/api/v1/inventory/reservations/{reservation_id}", token=shopper
        )
        self.detail(f"reservation {reservation_id} is {reservation.json()['status']}")
        await self.mail_went_out("payment_succeeded", paid, shopper_email)
        return reservation_id

    async def ship_in_parts(self, admin: str, shopper: str, order_id: str, product_id: str) -> None:
        """The paid reservation is an order; the admin ships 1 mug now, 1 later, each once."""
        self.step("The order ships in two parcels, each exactly once")
        path = f"/api/v1/orders/{order_id}"

        async def opened() -> dict[str, Any] | None:
            answer = await self.client.get(path, headers={"Authorization": f"Bearer {shopper}"})
            return answer.json() if answer.status_code == 200 else None

        order = await self.until("the paid reservation is an order", opened)
        self.detail(
            f"order {order_id} is {order['status']}: {order['items'][0]['committed']} committed"
        )
        for parcel in ("parcel-1", "parcel-1", "parcel-2"):  # parcel-1 twice: shipped once
            body = {
                "shipmentId": f"{order_id}-{parcel}",
                "items": [{"productId": product_id, "quantity": 1}],
            }
            await self.call("POST", f"{path}/shipments", token=admin, body=body, expect=(201,))
            order = (await self.call("GET", path, token=shopper, quiet=True)).json()
            left = order["items"][0]["committed"]
            self.detail(f"{parcel}: the order is {order['status']}, {left} committed")
        if order["status"] != "FULFILLED":
            raise WalkError(f"order {order_id} is {order['status']} after both parcels")

    async def send_back(
        self, admin: str, shopper: str, shopper_email: str, order_id: str, product_id: str
    ) -> None:
        """The shopper returns 1 mug: received once, on sale again, its price refunded."""
        self.step("A mug comes back: on sale again, and refunded, exactly once")
        refunds = await self.mails_sent("refund_issued")
        body = {
            "returnId": f"{order_id}-rma-1",
            "items": [{"productId": product_id, "quantity": 1, "restock": "RESELL"}],
        }
        path = f"/api/v1/orders/{order_id}/returns"
        for _ in range(2):  # the same return id twice: received, restocked and refunded once
            made = await self.call("POST", path, token=admin, body=body, expect=(201,))
        self.detail(f"return {made.json()['id']}: {made.json()['refunded']} to refund")
        state = await self.payment_reaches(shopper, order_id, "confirmed", completed=True)
        refund = state["refunds"][-1]
        self.detail(
            f"refund {refund['status']}: {refund['amount']} {refund['currency']}, reason "
            f"{refund['reason']}; the payment still reads {state['status']}"
        )
        await self.mail_went_out("refund_issued", refunds, shopper_email)

    async def read_journal(self, admin: str, order_id: str) -> None:
        """The admin reads the order's rows of the stock journal: each move of its units."""
        self.step("The stock journal: every move of the order's units, and why")
        path = f"/api/v1/inventory/journal?orderId={order_id}"
        rows = (await self.call("GET", path, token=admin, expect=(200,))).json()
        if [row["reason"] for row in rows][:1] != ["confirm"]:
            raise WalkError(f"the order's journal starts with {rows[:1]}, not its confirmation")
        for row in rows:
            after = row["after"]
            self.detail(
                f"journal: {row['reason']} {row['quantity']} {row['from']} -> {row['to']} "
                f"({row['reference']}, by {row['actor']}): {after['available']} available, "
                f"{after['committed']} committed, {after['shipped']} shipped"
            )

    async def pay_late(self, shopper: str, shopper_email: str, product_id: str) -> None:
        """Let a hold expire (or cancel it), pay it anyway, see the refund and its mail."""
        self.step("A late payment is refunded")
        reservation_id = await self.reserve(shopper, product_id, 1)
        if self.reservation_ttl <= SHORT_TTL_SECONDS:
            self.detail(
                f"waiting for the hold to expire (RESERVATION_TTL_SECONDS={self.reservation_ttl:g},"
                f" the sweeper runs every {self.sweep_interval:g} s)"
            )
            await self.reservation_reaches(
                shopper,
                reservation_id,
                "EXPIRED",
                max_wait=self.reservation_ttl + self.sweep_interval + self.max_wait,
            )
            self.detail(f"reservation {reservation_id} EXPIRED: the sweeper put its unit back")
        else:
            self.detail(
                f"holds last {self.reservation_ttl:g} s here, too long to wait: cancelling it "
                "instead (a payment for a cancelled hold is refunded the same way)"
            )
            await self.call(
                "POST", f"/api/v1/inventory/reservations/{reservation_id}/cancel", token=shopper
            )
            self.detail(f"reservation {reservation_id} RELEASED: its unit is back")
        refunds = await self.mails_sent("refund_issued")
        await self.pay(shopper, reservation_id, PRICE)
        state = await self.payment_reaches(shopper, reservation_id, "refunded", completed=True)
        refund = state["refunds"][0]
        self.detail(
            f"payment refunded: {refund['amount']} {refund['currency']}, reason "
            f"{refund['reason']} ({refund['description']})"
        )
        await self.mail_went_out("refund_issued", refunds, shopper_email)

    async def two_warehouses(self, suffix: str, admin: str, shopper: str, product_id: str) -> None:
        """Stock in two places sold through one channel: a line split over both, then cancelled."""
        self.step("Stock in two warehouses, sold through one channel")
        berlin, hamburg = f"berlin-{suffix}", f"hamburg-{suffix}"
        for name, units in ((berlin, 2), (hamburg, 5)):
            await self.call(
                "PUT",
                f"/api/v1/inventory/locations/{name}",
                token=admin,
                body={"label": name.split("-")[0].title()},
                quiet=True,
            )
            await self.call(
                "PUT",
                f"/api/v1/inventory/{product_id}/stock/{name}",
                token=admin,
                body={"onHand": units},
                quiet=True,
            )
        channel = f"web-{suffix}"
        await self.call(
            "PUT",
            f"/api/v1/inventory/channels/{channel}",
            token=admin,
            body={"locations": [{"location": berlin}, {"location": hamburg}]},
        )
        self.detail(f"channel {channel}: {berlin} first (2 mugs), then {hamburg} (5 mugs)")
        held = (
            await self.call(
                "POST",
                "/api/v1/inventory/reserve",
                token=shopper,
                body={"productId": product_id, "quantity": 4, "channel": channel},
                expect=(201,),
            )
        ).json()
        split = ", ".join(f"{a['quantity']} from {a['location']}" for a in held["allocations"])
        self.detail(f"4 mugs held in {channel}: {split}")
        await self.call(
            "POST", f"/api/v1/inventory/reservations/{held['id']}/cancel", token=shopper
        )
        levels = (
            await self.call("GET", f"/api/v1/inventory/{product_id}/stock", token=admin)
        ).json()
        back = ", ".join(
            f"{row['location']} {row['available']}"
            for row in levels
            if row["location"] != "default"
        )
        self.detail(f"cancelled: every mug back where it came from ({back})")

    async def gift_box(self, suffix: str, admin: str, shopper: str, mug_id: str) -> None:
        """A kit of two mugs and a tea: its stock is what they make; a hold holds them."""
        self.step("A gift box sold as a kit: 2 mugs and 1 tea")
        made: dict[str, str] = {}
        for name, sku, price, stock in (
            ("commercekit demo tea", f"DEMO-TEA-{suffix.upper()}", "3.50", 4),
            ("commercekit demo gift box", f"DEMO-BOX-{suffix.upper()}", "25.00", 0),
        ):
            body = {"sku": sku, "name": name, "price": price, "stock": stock}
            answer = await self.call(
                "POST", "/api/v1/inventory", token=admin, body=body, expect=(201,), quiet=True
            )
            made[sku] = answer.json()["id"]
        tea_id, box_id = made.values()
        parts = [{"productId": mug_id, "quantity": 2}, {"productId": tea_id, "quantity": 1}]
        await self.call(
            "PUT", f"/api/v1/inventory/{box_id}/kit", token=admin, body={"components": parts}
        )
        box = (await self.call("GET", f"/api/v1/products/{box_id}", quiet=True)).json()
        self.detail(f"the gift box keeps no stock: {box['stock']} can be made of mugs and teas")
        held = (
            await self.call(
                "POST",
                "/api/v1/inventory/reserve",
                token=shopper,
                body={"productId": box_id, "quantity": 1},
                expect=(201,),
            )
        ).json()
        names = {mug_id: "mugs", tea_id: "tea"}
        units = ", ".join(f"{a['quantity']} {names[a['productId']]}" for a in held["allocations"])
        self.detail(f"1 gift box held: {units}, in one atomic step")
        await self.call(
            "POST", f"/api/v1/inventory/reservations/{held['id']}/cancel", token=shopper
        )
        self.detail("cancelled: the mugs and the tea are available again")

    async def login(self, address: str) -> str:
        """Log in as `address`; the access token."""
        answer = (
            await self.call(
                "POST", "/api/v1/auth/login", body={"email": address, "password": PASSWORD}
            )
        ).json()
        self.detail(f"{address} logged in: user id {answer['user']['id']}")
        token: str = answer["accessToken"]
        return token

    async def reserve(self, token: str, product_id: str, quantity: int) -> str:
        """Hold `quantity` units; the reservation id."""
        answer = (
            await self.call(
                "POST",
                "/api/v1/inventory/reserve",
                token=token,
                body={"productId": product_id, "quantity": quantity},
                expect=(201,),
            )
        ).json()
        self.detail(
            f"reservation {answer['reservationId']}: {quantity} held until {answer['expiresAt']}"
        )
        reservation_id: str = answer["reservationId"]
        return reservation_id

    async def pay(self, token: str, reservation_id: str, amount: Decimal) -> None:
        """Pay `amount` for the reservation with the test card that always succeeds."""
        answer = (
            await self.call(
                "POST",
                "/api/v1/payment",
                token=token,
                body={
                    "reservationId": reservation_id,
                    "amount": str(amount),
                    "paymentMethod": "tok_success",
                },
                expect=(202,),
            )
        ).json()
        self.detail(f"paid {amount} (tok_success): {answer['status']}, the outcome comes as events")

    async def payment_reaches(
        self, token: str, reservation_id: str, status: str, *, completed: bool = False
    ) -> dict[str, Any]:
        """Poll ``GET /api/v1/payment/{id}`` until its status is `status` (refunds completed)."""
        seen: list[str] = []

        async def probe() -> dict[str, Any] | None:
            answer = await self.call(
                "GET",
                f"/api/v1/payment/{reservation_id}",
                token=token,
                expect=(200, 404),
                quiet=True,
            )
            if answer.status_code == 404:
                return None
            state: dict[str, Any] = answer.json()
            if not seen or seen[-1] != state["status"]:
                seen.append(state["status"])
            if state["status"] == "failed":
                raise WalkError(f"the payment failed: {state.get('failureReason')}")
            done = not completed or all(r["status"] == "completed" for r in state["refunds"])
            return state if state["status"] == status and done else None

        state = await self.until(f"the payment is {status}", probe)
        self.detail(f"GET /api/v1/payment/{reservation_id}: {' -> '.join(seen)}")
        return state

    async def reservation_reaches(
        self, token: str, reservation_id: str, status: str, *, max_wait: float
    ) -> None:
        """Poll the reservation until its status is `status`."""

        async def probe() -> bool | None:
            answer = await self.call(
                "GET", f"/api/v1/inventory/reservations/{reservation_id}", token=token, quiet=True
            )
            return True if answer.json()["status"] == status else None

        await self.until(f"the reservation is {status}", probe, max_wait=max_wait)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except json.JSONDecodeError:
        return response.text[:200] or "(empty body)"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message", body["error"]))
    return json.dumps(body)[:200]


async def play(
    base_url: str,
    *,
    admin_email: str,
    reservation_ttl: float,
    sweep_interval: float,
    out: TextIO | None = None,
    max_wait: float = 30.0,
) -> bool:
    """Play the walk against `base_url`, telling it on `out`; whether it went through.

    A failing step is reported on `out` and ends the walk; it never raises
    (except `asyncio.CancelledError`, when the server stops mid-walk).
    """
    stream = out or sys.stdout
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        walk = Walk(
            client,
            admin_email=admin_email,
            reservation_ttl=reservation_ttl,
            sweep_interval=sweep_interval,
            out=stream,
            max_wait=max_wait,
        )
        walk.say("\n=== Guided walk (commercekit demo --no-walk skips it) ===")
        try:
            await walk.play()
        except Exception as exc:  # any failure ends the walk, never the server
            reason = str(exc) if isinstance(exc, WalkError) else f"{type(exc).__name__}: {exc}"
            walk.say(f"\n!!! walk failed at step {walk.current}: {reason}")
            walk.say(f"!!! the server keeps serving at {base_url}")
            return False
    walk.say(f"\n=== Walk complete. Still serving at {base_url}; press Ctrl-C to stop. ===")
    return True
