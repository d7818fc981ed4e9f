"""The built-in templates render, escape user input, and yield to overrides."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import pytest

from commercekit.email import TEMPLATE_NAMES, RenderedEmail, TemplateRenderer
from commercekit.errors import TemplateError

HOSTILE = '<script>alert("x")</script> & <b>bold</b>\r\nBcc: evil@example.com'

CONTEXTS: dict[str, dict[str, Any]] = {
    "welcome": {"username": HOSTILE},
    "payment_succeeded": {"name": HOSTILE, "reservation_id": HOSTILE, "amount": "12.50 EUR"},
    "payment_failed": {
        "name": HOSTILE,
        "reservation_id": HOSTILE,
        "amount": "12.50 EUR",
        "reason": HOSTILE,
    },
    "refund_issued": {
        "name": HOSTILE,
        "reservation_id": HOSTILE,
        "amount": "12.50 EUR",
        "reason": HOSTILE,
    },
    "order_shipped": {
        "name": HOSTILE,
        "order_id": HOSTILE,
        "lines": [{"sku": HOSTILE, "quantity": 2}],
        "complete": False,
    },
    "order_cancelled": {
        "name": HOSTILE,
        "order_id": HOSTILE,
        "lines": [{"sku": HOSTILE, "quantity": 1}],
        "complete": True,
    },
}


@pytest.fixture
def renderer() -> TemplateRenderer:
    return TemplateRenderer(defaults={"shop_name": "Acme <Shop>", "support_email": None})


def test_every_shipped_template_has_a_test_context() -> None:
    assert set(CONTEXTS) == set(TEMPLATE_NAMES)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_each_template_renders_with_user_input_escaped(
    renderer: TemplateRenderer, name: str
) -> None:
    mail = renderer.render(name, CONTEXTS[name])

    assert mail.html.startswith("<!DOCTYPE html>")
    assert "<script>" not in mail.html
    assert "<b>bold</b>" not in mail.html
    assert (
        "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in mail.html
    )
    assert "Acme &lt;Shop&gt;" in mail.html
    assert "\r" not in mail.subject
    assert "\n" not in mail.subject
    assert mail.subject.strip() == mail.subject != ""
    assert mail.text.endswith("\n")
    assert '<script>alert("x")</script>' in mail.text  # plain text shows it as typed
    assert "Acme <Shop>" in mail.text


def test_the_bodies_say_what_happened(renderer: TemplateRenderer) -> None:
    context = {"name": "Ada", "reservation_id": "R-1", "amount": "9.99 EUR", "reason": "late"}
    refund = renderer.render("refund_issued", context)
    assert refund.subject == "Refund of 9.99 EUR for order R-1"
    assert "We refunded 9.99 EUR for order R-1 (late)." in refund.text
    assert refund.text.startswith("Hi Ada,")
    failed = renderer.render("payment_failed", {**context, "reason": None, "name": None})
    assert "for order R-1 failed." in failed.text
    assert failed.text.startswith("Hi there,")


def test_a_missing_value_or_template_is_a_template_error(renderer: TemplateRenderer) -> None:
    with pytest.raises(TemplateError, match="username"):
        renderer.render("welcome", {})
    with pytest.raises(TemplateError, match="order_shipped"):
        renderer.render("order_shipped", {})


def test_a_user_template_wins_over_the_built_in_one(tmp_path: Path) -> None:
    (tmp_path / "welcome.html").write_text("<p>Howdy {{ username }}</p>")
    renderer = TemplateRenderer(
        loaders=[
            {"welcome.subject.txt": "Hey {{ username }}"},
            jinja2.FileSystemLoader(tmp_path),
        ],
        defaults={"shop_name": "Acme", "support_email": None},
    )
    mail = renderer.render("welcome", {"username": "<ada>"})
    assert mail.subject == "Hey <ada>"  # subjects are plain text
    assert mail.html == "<p>Howdy &lt;ada&gt;</p>"  # user templates are escaped too
    assert "Welcome, <ada>!" in mail.text  # not overridden: the built-in one


def test_an_override_callable_wins_and_may_decline() -> None:
    seen: list[tuple[str, Mapping[str, Any]]] = []

    def override(name: str, context: Mapping[str, Any]) -> RenderedEmail | None:
        seen.append((name, context))
        if name == "welcome":
            return RenderedEmail(subject="Plugin", html="<p>plugin</p>", text="plugin\n")
        return None

    renderer = TemplateRenderer(
        loaders=[{"welcome.subject.txt": "loader"}],
        override=override,
        defaults={"shop_name": "Acme", "support_email": None},
    )
    assert renderer.render("welcome", {"username": "ada"}).subject == "Plugin"
    refund = renderer.render(
        "refund_issued", {"name": None, "reservation_id": "R", "amount": "1.00 EUR", "reason": None}
    )
    assert refund.subject == "Refund of 1.00 EUR for order R"
    assert [name for name, _ in seen] == ["welcome", "refund_issued"]
    assert seen[0][1] == {"username": "ada"}
