"""The `EmailSender` protocol and the `EmailMessage` it sends.

Every sender takes an idempotency key: sending the same key twice delivers
one mail. Pass something deterministic (the id of the event that caused the
mail), so a retry after a crash or a redelivered event sends nothing new.
"""

from __future__ import annotations

from typing import Annotated, Protocol, runtime_checkable

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = ["EmailMessage", "EmailSender"]


def _one_line(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError("must be a single line (no CR or LF)")
    return value


def _address(value: str) -> str:
    _one_line(value)
    if "@" not in value:
        raise ValueError(f"not an email address: {value!r}")
    return value


Address = Annotated[str, AfterValidator(_address)]
"""``shop@example.com`` or ``Shop <shop@example.com>``, on one line."""

HeaderText = Annotated[str, AfterValidator(_one_line)]


class EmailMessage(BaseModel):
    """One mail, ready to send: addresses, subject, and both bodies.

    Addresses and the subject may not contain line breaks, so no value can
    smuggle in extra headers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    to: tuple[Address, ...] = Field(min_length=1, max_length=50)
    subject: HeaderText = Field(min_length=1, max_length=998)
    html: str
    text: str
    sender: Address | None = None
    """The ``From`` address; the sender's default when None."""
    reply_to: tuple[Address, ...] = ()
    headers: dict[HeaderText, HeaderText] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    """Provider tags (Resend: ASCII letters, digits, ``_`` and ``-``)."""


@runtime_checkable
class EmailSender(Protocol):
    """Delivers `EmailMessage`s: Resend, the console, a list in memory, your own."""

    async def send(self, message: EmailMessage, *, idempotency_key: str | None = None) -> str:
        """Send `message` and return the provider's id for it.

        Args:
            message: what to send.
            idempotency_key: sending twice with the same key delivers one mail
                (and returns the same id). None sends without that protection
                across calls, though retries inside one call still share a key.

        Raises:
            EmailDeliveryError: the mail was not taken; retry later, with the
                same key.
            EmailRejected: the provider refused it; retrying will not help.
        """
        ...
