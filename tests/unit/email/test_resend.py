"""ResendSender against a real HTTP server on loopback that records what it receives."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest
import resend

from commercekit.email import EmailMessage, EmailSender, SendRetry
from commercekit.email.resend import ResendSender, ResendSettings
from commercekit.errors import (
    ConfigurationError,
    EmailDeliveryError,
    EmailRejected,
    MissingExtraError,
)
from commercekit.testing.servers import free_port
from tests.unit.email.resend_server import RecordingResendServer, Reply

UNAVAILABLE = Reply(503, headers={"Retry-After": "0"})
INVALID_TO = Reply(422, {"statusCode": 422, "message": "Invalid `to`", "name": "validation_error"})


@pytest.fixture
def server() -> Iterator[RecordingResendServer]:
    server = RecordingResendServer().start()
    yield server
    server.stop()


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def _sender(url: str, sleeps: Sleeps, attempts: int = 4) -> ResendSender:
    settings = ResendSettings(api_key="re_test_123", api_url=url, sender="Shop <shop@example.com>")
    retry = SendRetry(attempts=attempts, base_delay=0.01, max_delay=0.05, jitter=False)
    return ResendSender(settings, retry=retry, sleep=sleeps)


@pytest.fixture
def sender(server: RecordingResendServer, sleeps: Sleeps) -> ResendSender:
    return _sender(server.url, sleeps)


MESSAGE = EmailMessage(
    to=("ada@example.com",),
    subject="Your order",
    html="<p>Thanks</p>",
    text="Thanks\n",
    reply_to=("support@example.com",),
    headers={"X-Entity-Ref-ID": "order-1"},
    tags={"template": "payment_succeeded"},
)


async def test_sends_the_right_payload(sender: ResendSender, server: RecordingResendServer) -> None:
    email_id = await sender.send(MESSAGE, idempotency_key="payment_succeeded/evt-1")

    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/emails")
    assert request.headers["authorization"] == "Bearer re_test_123"
    assert request.headers["idempotency-key"] == "payment_succeeded/evt-1"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "from": "Shop <shop@example.com>",
        "to": ["ada@example.com"],
        "subject": "Your order",
        "html": "<p>Thanks</p>",
        "text": "Thanks\n",
        "reply_to": ["support@example.com"],
        "headers": {"X-Entity-Ref-ID": "order-1"},
        "tags": [{"name": "template", "value": "payment_succeeded"}],
    }
    assert [mail["id"] for mail in server.delivered] == [email_id]


async def test_a_503_is_retried_and_the_retry_is_one_mail(
    sender: ResendSender, server: RecordingResendServer, sleeps: Sleeps
) -> None:
    server.reply(UNAVAILABLE)
    email_id = await sender.send(MESSAGE, idempotency_key="evt-2")

    assert len(server.requests) == 2
    assert {r.headers["idempotency-key"] for r in server.requests} == {"evt-2"}
    assert server.requests[0].body == server.requests[1].body
    assert [mail["id"] for mail in server.delivered] == [email_id]
    assert sleeps == [0.01]


async def test_a_lost_answer_retried_with_the_same_key_is_not_a_second_mail(
    sender: ResendSender, server: RecordingResendServer
) -> None:
    server.reply(Reply(502, deliver=True))  # Resend took it, the answer was lost
    email_id = await sender.send(MESSAGE)  # no key given: one is made for all attempts

    assert len(server.requests) == 2
    keys = {r.headers["idempotency-key"] for r in server.requests}
    assert len(keys) == 1
    assert [mail["id"] for mail in server.delivered] == [email_id]


async def test_a_422_is_not_retried(
    sender: ResendSender, server: RecordingResendServer, sleeps: Sleeps
) -> None:
    server.reply(INVALID_TO)
    with pytest.raises(EmailRejected, match="Invalid `to`") as caught:
        await sender.send(MESSAGE, idempotency_key="evt-3")
    assert (caught.value.status, caught.value.attempts) == (422, 1)
    assert len(server.requests) == 1
    assert server.delivered == []
    assert sleeps == []


async def test_429_waits_as_long_as_retry_after_says(
    sender: ResendSender, server: RecordingResendServer, sleeps: Sleeps
) -> None:
    limited = {"statusCode": 429, "message": "Too many", "name": "rate_limit_exceeded"}
    server.reply(Reply(429, limited, headers={"Retry-After": "2"}))
    await sender.send(MESSAGE, idempotency_key="evt-4")
    assert sleeps == [2.0]
    assert len(server.delivered) == 1


async def test_retries_are_bounded(server: RecordingResendServer, sleeps: Sleeps) -> None:
    sender = _sender(server.url, sleeps, attempts=3)
    server.reply(UNAVAILABLE, UNAVAILABLE, UNAVAILABLE, UNAVAILABLE)
    with pytest.raises(EmailDeliveryError) as caught:
        await sender.send(MESSAGE, idempotency_key="evt-5")
    assert not isinstance(caught.value, EmailRejected)
    assert (caught.value.status, caught.value.attempts) == (503, 3)
    assert len(server.requests) == 3
    assert sleeps == [0.01, 0.02]  # exponential
    assert server.delivered == []


async def test_a_refused_connection_is_retried(sleeps: Sleeps) -> None:
    sender = _sender(f"http://127.0.0.1:{free_port()}", sleeps, attempts=2)
    with pytest.raises(EmailDeliveryError) as caught:
        await sender.send(MESSAGE, idempotency_key="evt-6")
    assert (caught.value.status, caught.value.attempts) == (None, 2)
    assert len(sleeps) == 1


async def test_the_sdk_globals_are_left_as_they_were(sender: ResendSender) -> None:
    before = resend.api_key, resend.api_url, resend.default_http_client
    await sender.send(MESSAGE, idempotency_key="evt-7")
    assert (resend.api_key, resend.api_url, resend.default_http_client) == before


async def test_a_message_without_sender_needs_a_default(
    server: RecordingResendServer, sleeps: Sleeps
) -> None:
    settings = ResendSettings(api_key="re_test_123", api_url=server.url)
    with pytest.raises(ConfigurationError, match="no sender"):
        await ResendSender(settings).send(MESSAGE)
    explicit = MESSAGE.model_copy(update={"sender": "other@example.com"})
    await ResendSender(settings).send(explicit)
    assert server.requests[0].body["from"] == "other@example.com"


def test_resend_sender_is_an_email_sender(sender: ResendSender) -> None:
    assert isinstance(sender, EmailSender)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COMMERCEKIT_RESEND_API_KEY", "re_from_env")
    monkeypatch.setenv("COMMERCEKIT_RESEND_API_URL", "http://127.0.0.1:9")
    settings = ResendSettings()
    assert settings.api_key.get_secret_value() == "re_from_env"
    assert settings.api_url == "http://127.0.0.1:9"
    assert "re_from_env" not in repr(settings)


def test_importing_without_the_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "commercekit.email.resend")
    monkeypatch.setitem(sys.modules, "resend", None)
    with pytest.raises(MissingExtraError, match=r"commercekit\[resend\]") as caught:
        importlib.import_module("commercekit.email.resend")
    assert caught.value.extra == "resend"
