"""The Mailer renders, sends once per idempotency key, and retries safely."""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import Decimal

import pytest
from pydantic import ValidationError

from commercekit.email import (
    ConsoleSender,
    EmailMessage,
    EmailSender,
    Mailer,
    MemorySender,
    SendRetry,
    format_amount,
)
from commercekit.email.resend import ResendSender, ResendSettings
from commercekit.errors import ConfigurationError, EmailDeliveryError
from tests.unit.email.resend_server import RecordingResendServer, Reply


@pytest.fixture
def sender() -> MemorySender:
    return MemorySender()


@pytest.fixture
def mailer(sender: MemorySender) -> Mailer:
    return Mailer(sender, shop_name="Acme", sender_address="Acme <shop@acme.test>")


async def test_welcome_is_rendered_and_sent_with_a_derived_key(
    mailer: Mailer, sender: MemorySender
) -> None:
    email_id = await mailer.welcome("ada@example.com", username="ada", idempotency_key="evt-1")
    [sent] = sender.outbox
    assert sent.id == email_id
    assert sent.idempotency_key == "welcome/evt-1"
    assert sent.message.to == ("ada@example.com",)
    assert sent.message.sender == "Acme <shop@acme.test>"
    assert sent.message.subject == "Welcome to Acme, ada"
    assert sent.message.tags == {"template": "welcome"}
    assert sender.to("ada@example.com") == [sent.message]


async def test_a_redelivered_event_sends_no_second_mail(
    mailer: Mailer, sender: MemorySender
) -> None:
    first = await mailer.refund_issued(
        "ada@example.com",
        reservation_id="R-1",
        amount=Decimal("12.5"),
        currency="eur",
        reason="the reservation had expired",
        idempotency_key="evt-9",
    )
    again = await mailer.refund_issued(
        "ada@example.com",
        reservation_id="R-1",
        amount=Decimal("12.5"),
        currency="eur",
        reason="the reservation had expired",
        idempotency_key="evt-9",
    )
    assert first == again
    [sent] = sender.outbox
    assert sent.message.subject == "Refund of 12.50 EUR for order R-1"
    assert "(the reservation had expired)" in sent.message.text


async def test_one_event_may_cause_different_mails(mailer: Mailer, sender: MemorySender) -> None:
    await mailer.payment_succeeded(
        "a@example.com", reservation_id="R", amount=Decimal(5), currency="EUR", idempotency_key="e"
    )
    await mailer.payment_failed(
        "a@example.com", reservation_id="R", amount=Decimal(5), currency="EUR", idempotency_key="e"
    )
    assert [s.idempotency_key for s in sender.outbox] == ["payment_succeeded/e", "payment_failed/e"]
    assert "5.00 EUR" in sender.outbox[0].message.html


async def test_a_failed_send_retried_with_the_same_key_is_one_mail(
    mailer: Mailer, sender: MemorySender
) -> None:
    sender.fail_next(EmailDeliveryError("provider down", status=503))
    with pytest.raises(EmailDeliveryError):
        await mailer.welcome("ada@example.com", username="ada", idempotency_key="evt-2")
    await mailer.welcome("ada@example.com", username="ada", idempotency_key="evt-2")
    await mailer.welcome("ada@example.com", username="ada", idempotency_key="evt-2")
    assert sender.attempts == 3
    assert len(sender.outbox) == 1


@pytest.mark.parametrize("key", ["", "k" * 201])
async def test_the_idempotency_key_is_required(mailer: Mailer, key: str) -> None:
    with pytest.raises(ConfigurationError):
        await mailer.welcome("ada@example.com", username="ada", idempotency_key=key)


@pytest.fixture
def resend_server() -> Iterator[RecordingResendServer]:
    server = RecordingResendServer().start()
    yield server
    server.stop()


async def test_mailer_on_resend_through_a_503_delivers_one_mail(
    resend_server: RecordingResendServer,
) -> None:
    settings = ResendSettings(api_key="re_x", api_url=resend_server.url, sender="shop@acme.test")
    retry = SendRetry(base_delay=0.001, jitter=False)
    mailer = Mailer(ResendSender(settings, retry=retry), shop_name="Acme")
    resend_server.reply(Reply(503))
    await mailer.payment_succeeded(
        "ada@example.com",
        reservation_id="R-7",
        amount=Decimal("3"),
        currency="EUR",
        idempotency_key="evt-3",
        name="<Ada>",
    )
    assert len(resend_server.requests) == 2
    [mail] = resend_server.delivered
    assert mail["subject"] == "Payment received: 3.00 EUR for order R-7"
    assert "Hi &lt;Ada&gt;," in mail["html"]
    assert resend_server.requests[-1].headers["idempotency-key"] == "payment_succeeded/evt-3"


async def test_console_sender_prints_each_mail_once() -> None:
    out = io.StringIO()
    console = ConsoleSender(out, sender="shop@acme.test")
    mailer = Mailer(console, shop_name="Acme")
    first = await mailer.welcome("ada@example.com", username="ada", idempotency_key="e1")
    assert await mailer.welcome("ada@example.com", username="ada", idempotency_key="e1") == first
    printed = out.getvalue()
    assert printed.count("Subject: Welcome to Acme, ada") == 1
    assert "From: shop@acme.test" in printed
    assert "Idempotency-Key: welcome/e1" in printed
    assert "Welcome, ada!" in printed


def test_the_senders_are_email_senders() -> None:
    assert isinstance(MemorySender(), EmailSender)
    assert isinstance(ConsoleSender(), EmailSender)


@pytest.mark.parametrize(
    "fields",
    [
        {"subject": "Hi\r\nBcc: evil@example.com"},
        {"to": ("ada@example.com\nBcc: evil@example.com",)},
        {"to": ("not-an-address",)},
        {"to": ()},
        {"headers": {"X-A": "b\nc"}},
    ],
)
def test_messages_refuse_header_injection(fields: dict[str, object]) -> None:
    values: dict[str, object] = {"to": ("a@example.com",), "subject": "s", "html": "", "text": ""}
    with pytest.raises(ValidationError):
        EmailMessage.model_validate(values | fields)


def test_amounts_are_formatted_in_major_units() -> None:
    assert format_amount(Decimal("12.5"), "eur") == "12.50 EUR"
    assert format_amount(7, "USD") == "7.00 USD"
