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

from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes
from commercekit.email.console import ConsoleSender
from commercekit.email.mailer import Mailer, format_amount
from commercekit.email.memory import MemorySender, SentEmail
from commercekit.email.recipients import (
    InMemoryRecipients,
    Recipient,
    RecipientDirectory,
    SqlRecipients,
)
from commercekit.email.retry import SendRetry, parse_retry_after
from commercekit.email.sender import EmailMessage, EmailSender
from commercekit.email.templates import (
    TEMPLATE_NAMES,
    RenderedEmail,
    TemplateOverride,
    TemplateRenderer,
)

if TYPE_CHECKING:
    from commercekit.email.notifier import EMAIL_EVENT_TYPES, EmailNotifier, UnknownRecipient
    from commercekit.email.resend import ResendSender, ResendSettings

    RetryPolicy = SendRetry  # deprecated: the old name of SendRetry

__all__ = [
    "EMAIL_EVENT_TYPES",
    "TEMPLATE_NAMES",
    "ConsoleSender",
    "EmailMessage",
    "EmailNotifier",
    "EmailSender",
    "InMemoryRecipients",
    "Mailer",
    "MemorySender",
    "Recipient",
    "RecipientDirectory",
    "RenderedEmail",
    "ResendSender",
    "ResendSettings",
    "SendRetry",
    "SentEmail",
    "SqlRecipients",
    "TemplateOverride",
    "TemplateRenderer",
    "UnknownRecipient",
    "format_amount",
    "parse_retry_after",
]

_LAZY = {
    # These need the resend extra, or the events package; import them on first use.
    "ResendSender": "commercekit.email.resend",
    "ResendSettings": "commercekit.email.resend",
    "EmailNotifier": "commercekit.email.notifier",
    "EMAIL_EVENT_TYPES": "commercekit.email.notifier",
    "UnknownRecipient": "commercekit.email.notifier",
}

__getattr__ = lazy_attributes(__name__, _LAZY, renamed={"RetryPolicy": "SendRetry"})
