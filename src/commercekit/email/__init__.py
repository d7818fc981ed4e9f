"""Transactional email: the `EmailSender` protocol, senders, templates, the `Mailer`.

```python
from commercekit.email import Mailer, MemorySender

sender = MemorySender()
mailer = Mailer(sender, shop_name="Acme", sender_address="shop@acme.test")
await mailer.welcome("ada@example.com", username="ada", idempotency_key="user-created-1")
assert sender.outbox[0].message.subject == "Welcome to Acme, ada"
```

`ResendSender` needs ``commercekit[resend]``; it is imported on first use.
"""

import importlib
from typing import TYPE_CHECKING

from commercekit.email.console import ConsoleSender
from commercekit.email.mailer import Mailer, format_amount
from commercekit.email.memory import MemorySender, SentEmail
from commercekit.email.retry import RetryPolicy, parse_retry_after
from commercekit.email.sender import EmailMessage, EmailSender
from commercekit.email.templates import (
    TEMPLATE_NAMES,
    RenderedEmail,
    TemplateOverride,
    TemplateRenderer,
)

if TYPE_CHECKING:
    from commercekit.email.resend import ResendSender, ResendSettings

__all__ = [
    "TEMPLATE_NAMES",
    "ConsoleSender",
    "EmailMessage",
    "EmailSender",
    "Mailer",
    "MemorySender",
    "RenderedEmail",
    "ResendSender",
    "ResendSettings",
    "RetryPolicy",
    "SentEmail",
    "TemplateOverride",
    "TemplateRenderer",
    "format_amount",
    "parse_retry_after",
]

_LAZY = {
    # These need the resend extra; import them only when asked for.
    "ResendSender": "commercekit.email.resend",
    "ResendSettings": "commercekit.email.resend",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
