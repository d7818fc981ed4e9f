"""A commercekit plugin: records the expiries it hears of, renders the welcome mail."""

from commercekit.email.templates import RenderedEmail
from commercekit.plugins import hookimpl

EXPIRED: list[str] = []


@hookimpl
def commercekit_reservation_expired(reservation):
    EXPIRED.append(reservation.id)


@hookimpl
def commercekit_email_template(name, context):
    if name != "welcome":
        return None
    return RenderedEmail(
        subject=f"Welcome from the demo plugin, {context['username']}",
        html="<p>demo</p>",
        text="demo",
    )
