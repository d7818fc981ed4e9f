"""`ConsoleSender`: prints each mail instead of sending it (development, the demo)."""

from __future__ import annotations

import sys
import uuid
from typing import TextIO

from commercekit.email.sender import EmailMessage

__all__ = ["ConsoleSender"]


class ConsoleSender:
    """An `EmailSender` that writes each mail's headers and plain-text body to a stream.

    A key it has seen is printed once: a repeated send returns the first id.

    Args:
        stream: where to write; standard output when None.
        sender: the ``From`` shown for messages that have none.
    """

    def __init__(self, stream: TextIO | None = None, *, sender: str | None = None) -> None:
        self._stream = stream
        self.sender = sender
        self._sent: dict[str, str] = {}

    async def send(self, message: EmailMessage, *, idempotency_key: str | None = None) -> str:
        """Print `message`; its (made-up) id."""
        if idempotency_key is not None and idempotency_key in self._sent:
            return self._sent[idempotency_key]
        message_id = f"console-{uuid.uuid4().hex}"
        lines = [
            f"From: {message.sender or self.sender or '(default sender)'}",
            f"To: {', '.join(message.to)}",
            f"Subject: {message.subject}",
            f"Message-Id: {message_id}",
        ]
        if idempotency_key is not None:
            lines.append(f"Idempotency-Key: {idempotency_key}")
        stream = self._stream or sys.stdout
        stream.write("\n".join([*lines, "", message.text.rstrip(), "-" * 72, ""]))
        stream.flush()
        if idempotency_key is not None:
            self._sent[idempotency_key] = message_id
        return message_id
