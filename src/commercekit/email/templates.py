"""Transactional mail templates (jinja2): a subject, an HTML body and a plain-text body.

Each mail ``NAME`` is three templates: ``NAME.subject.txt``, ``NAME.html``
and ``NAME.txt``. commercekit ships ``welcome``, ``payment_succeeded``,
``payment_failed`` and ``refund_issued`` (in ``commercekit/email/templates``).

Override any file with your own loaders, searched before the built-in
ones, or a whole mail with an `override` callable, consulted first (the
plugin hook for email rendering plugs in here):

```python
renderer = TemplateRenderer(
    loaders=[{"welcome.subject.txt": "Hello {{ username }}, welcome aboard"}],
    override=lambda name, context: None,  # or a RenderedEmail
)
```

Values are HTML-escaped in ``.html`` templates (autoescape), and the subject
is folded onto one line, so a user name such as ``<script>`` or one with a
line break cannot change the markup or the headers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from commercekit.errors import TemplateError

__all__ = ["TEMPLATE_NAMES", "RenderedEmail", "TemplateOverride", "TemplateRenderer"]

TEMPLATE_NAMES = (
    "welcome",
    "payment_succeeded",
    "payment_failed",
    "refund_issued",
    "order_shipped",
    "order_cancelled",
)
"""The mails commercekit ships templates for."""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered mail: subject, HTML body, plain-text body."""

    subject: str
    html: str
    text: str


TemplateOverride = Callable[[str, Mapping[str, Any]], RenderedEmail | None]
"""``override(name, context)``: a whole rendered mail, or None to render the templates.

What it returns is used as is: escaping is the override's own business.
"""


class TemplateRenderer:
    """Renders the transactional mails from jinja2 templates.

    Args:
        loaders: jinja2 loaders, or ``{filename: source}`` mappings, searched
            in order before the built-in templates.
        override: consulted first for every mail; its non-None answer wins.
        defaults: values every template sees (``shop_name``, ``support_email``...).
    """

    def __init__(
        self,
        *,
        loaders: Sequence[jinja2.BaseLoader | Mapping[str, str]] = (),
        override: TemplateOverride | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> None:
        chain = [
            jinja2.DictLoader(dict(loader)) if isinstance(loader, Mapping) else loader
            for loader in loaders
        ]
        chain.append(jinja2.PackageLoader("commercekit.email", "templates"))
        self.environment = jinja2.Environment(
            loader=jinja2.ChoiceLoader(chain),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html", "htm"), default_for_string=True
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.environment.globals.update(defaults or {})
        self.override = override

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        """Render mail `name` with `context`.

        Raises:
            TemplateError: a template is missing, or uses a value `context`
                does not provide, or is not valid jinja2.
        """
        if self.override is not None:
            rendered = self.override(name, context)
            if rendered is not None:
                return rendered
        subject = self._render(f"{name}.subject.txt", context)
        return RenderedEmail(
            subject=" ".join(subject.split()),
            html=self._render(f"{name}.html", context),
            text=self._render(f"{name}.txt", context).strip() + "\n",
        )

    def _render(self, filename: str, context: Mapping[str, Any]) -> str:
        try:
            return self.environment.get_template(filename).render(context)
        except jinja2.TemplateNotFound as exc:
            raise TemplateError(f"no email template {exc.name!r}") from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"email template {filename!r} failed: {exc}") from exc
