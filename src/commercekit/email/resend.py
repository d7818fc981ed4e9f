"""`ResendSender`: mails through the Resend API (the resend SDK), with retries.

```python
sender = ResendSender(ResendSettings())  # COMMERCEKIT_RESEND_API_KEY, ..._SENDER
await sender.send(message, idempotency_key=f"welcome/{event.id}")
```

Every attempt of one send carries the same ``Idempotency-Key``, so a retry
after a timeout or a 5xx never becomes a second mail. 429 and 5xx answers
and lost connections are retried with backoff (`SendRetry`); any other 4xx
raises `EmailRejected` at once.

The resend SDK is synchronous and keeps its API key and base URL in module
globals: each attempt runs in a worker thread (`asyncio.to_thread`) and sets
those globals, under a process-wide lock, only for the length of its own
request. Requests through the SDK therefore go one at a time per process,
which is well within Resend's rate limit of a few requests a second.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from commercekit.email.retry import SendRetry, parse_retry_after
from commercekit.email.sender import EmailMessage
from commercekit.errors import (
    ConfigurationError,
    EmailDeliveryError,
    EmailRejected,
    MissingExtraError,
)

try:
    import resend
    from resend.exceptions import ResendError
    from resend.http_client_requests import RequestsClient
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingExtraError("resend", __name__) from exc

__all__ = ["ResendSender", "ResendSettings"]

log = logging.getLogger("commercekit.email")

_SDK_LOCK = threading.Lock()


class ResendSettings(BaseSettings):
    """Resend configuration, read from ``COMMERCEKIT_RESEND_*`` variables.

    Attributes:
        api_key: the Resend API key (``re_...``).
        api_url: the API's base URL; point it at a local server in tests.
        sender: the default ``From`` address of messages that have none.
        timeout: seconds one HTTP request may take.
    """

    model_config = SettingsConfigDict(env_prefix="COMMERCEKIT_RESEND_", extra="ignore", frozen=True)

    api_key: SecretStr
    api_url: str = "https://api.resend.com"
    sender: str | None = None
    timeout: float = 15.0


class ResendSender:
    """An `EmailSender` on the Resend API.

    Args:
        settings: API key, base URL, default sender, timeout.
        retry: how transient failures are retried.
        sleep: how to wait between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        settings: ResendSettings,
        *,
        retry: SendRetry | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.retry = retry or SendRetry()
        self._sleep = sleep
        self._http = RequestsClient(timeout=max(1, round(settings.timeout)))

    async def send(self, message: EmailMessage, *, idempotency_key: str | None = None) -> str:
        """Send `message` through Resend; the Resend email id.

        Raises:
            EmailRejected: Resend answered a 4xx other than 429 (bad address,
                unverified domain, invalid key...): not retried.
            EmailDeliveryError: still 429 / 5xx / no connection after the
                last attempt. Retrying later with the same key is safe.
        """
        key = idempotency_key or uuid.uuid4().hex
        params = self._params(message)
        attempts = self.retry.attempts
        for attempt in range(1, attempts + 1):
            try:
                return await asyncio.to_thread(self._send_once, params, key)
            except ResendError as exc:
                status = _status(exc)
                if status is not None and status < 500 and status != 429:
                    raise EmailRejected(
                        f"Resend refused the mail ({status}): {exc.message}",
                        status=status,
                        attempts=attempt,
                    ) from exc
                if attempt == attempts:
                    raise EmailDeliveryError(
                        f"Resend did not take the mail after {attempt} attempts: {exc.message}",
                        status=status,
                        attempts=attempt,
                    ) from exc
                delay = self.retry.delay(attempt, parse_retry_after(_header(exc, "retry-after")))
                log.warning(
                    "resend send failed (%s), retry %d/%d in %.2fs (idempotency key %s)",
                    status or "no connection",
                    attempt,
                    attempts - 1,
                    delay,
                    key,
                )
                await self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _params(self, message: EmailMessage) -> dict[str, Any]:
        sender = message.sender or self.settings.sender
        if sender is None:
            raise ConfigurationError("the message has no sender and ResendSettings.sender is unset")
        params: dict[str, Any] = {
            "from": sender,
            "to": list(message.to),
            "subject": message.subject,
            "html": message.html,
            "text": message.text,
        }
        if message.reply_to:
            params["reply_to"] = list(message.reply_to)
        if message.headers:
            params["headers"] = dict(message.headers)
        if message.tags:
            params["tags"] = [{"name": k, "value": v} for k, v in message.tags.items()]
        return params

    def _send_once(self, params: dict[str, Any], idempotency_key: str) -> str:
        with _SDK_LOCK:
            saved = resend.api_key, resend.api_url, resend.default_http_client
            resend.api_key = self.settings.api_key.get_secret_value()
            resend.api_url = self.settings.api_url.rstrip("/")
            resend.default_http_client = self._http
            try:
                response = resend.Emails.send(
                    params,  # type: ignore[arg-type] # a plain dict of the SendParams keys
                    {"idempotency_key": idempotency_key},
                )
            finally:
                resend.api_key, resend.api_url, resend.default_http_client = saved
        return str(response["id"])


def _status(exc: ResendError) -> int | None:
    if exc.error_type == "HttpClientError":  # no HTTP answer at all
        return None
    try:
        return int(exc.code)
    except (TypeError, ValueError):
        return None


def _header(exc: ResendError, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return str(value)
    return None
