"""`MemorySender`: keeps mails in a list, for tests (yours and the library's)."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass

from commercekit.email.sender import EmailMessage

__all__ = ["MemorySender", "SentEmail"]


@dataclass(frozen=True, slots=True)
class SentEmail:
    """A mail the `MemorySender` delivered."""

    id: str
    message: EmailMessage
    idempotency_key: str | None


class MemorySender:
    """An `EmailSender` that delivers into `outbox`, honouring idempotency keys as Resend does.

    ```python
    sender = MemorySender()
    sender.fail_next(EmailDeliveryError("provider down"))  # the next send raises
    ```
    """

    def __init__(self) -> None:
        self.outbox: list[SentEmail] = []
        self.attempts = 0
        self._by_key: dict[str, SentEmail] = {}
        self._failures: deque[Exception] = deque()

    async def send(self, message: EmailMessage, *, idempotency_key: str | None = None) -> str:
        """Deliver `message` into `outbox` (once per idempotency key); its id."""
        self.attempts += 1
        if self._failures:
            raise self._failures.popleft()
        if idempotency_key is not None and idempotency_key in self._by_key:
            return self._by_key[idempotency_key].id
        sent = SentEmail(id=uuid.uuid4().hex, message=message, idempotency_key=idempotency_key)
        self.outbox.append(sent)
        if idempotency_key is not None:
            self._by_key[idempotency_key] = sent
        return sent.id

    def fail_next(self, error: Exception, times: int = 1) -> None:
        """Make the next `times` sends raise `error` (and deliver nothing)."""
        self._failures.extend([error] * times)

    def to(self, address: str) -> list[EmailMessage]:
        """The delivered messages with `address` among their recipients."""
        return [sent.message for sent in self.outbox if address in sent.message.to]
