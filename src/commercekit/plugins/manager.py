"""`PluginManager`: a typed facade over pluggy's manager, one method per hook."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

from commercekit.errors import ConfigurationError
from commercekit.plugins import hookspecs

if TYPE_CHECKING:
    from commercekit.email.templates import RenderedEmail
    from commercekit.events.envelope import Envelope
    from commercekit.payments.models import Payment, PaymentCase, RefundDecision
    from commercekit.payments.policy import RefundPolicy
    from commercekit.reservations.locations import Channel
    from commercekit.reservations.models import Reservation, ReservationLine

__all__ = ["DEFAULT_PLUGINS", "PluginManager"]

logger = logging.getLogger("commercekit.plugins")

DEFAULT_PLUGINS: tuple[str, ...] = ("commercekit.payments.policy",)
"""The modules of commercekit's own hook implementations, each registered under its name.

Every `PluginManager` registers them first; their hooks are ``trylast``,
so your plugins decide before them (``commercekit.payments.policy``: the
default refund decision).
"""


class PluginManager:
    """Discovers plugins and calls their hooks, with types.

    pluggy's ``pm.hook`` is untyped; call the methods here instead. Plugins
    published under the ``commercekit`` entry-point group are loaded unless
    `load_entrypoints` is False; pass more in `plugins`. A hook
    implementation whose name matches no hookspec (a typo) is an error.

    Args:
        plugins: objects or modules with ``@hookimpl`` functions to register.
        load_entrypoints: load the installed ``commercekit`` plugins.
    """

    def __init__(self, plugins: Iterable[object] = (), *, load_entrypoints: bool = True) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._register_defaults()
        for plugin in plugins:
            self._pm.register(plugin)
        if load_entrypoints:
            self._pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        self._pm.check_pending()

    def _register_defaults(self) -> None:
        """Register `DEFAULT_PLUGINS` (imported here: they import this package)."""
        for name in DEFAULT_PLUGINS:
            self._pm.register(importlib.import_module(name), name=name)

    @property
    def pluggy(self) -> pluggy.PluginManager:
        """The underlying pluggy manager (for tooling; prefer the typed methods)."""
        return self._pm

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register one more plugin; its hooks must all be known."""
        self._pm.register(plugin, name=name)
        self._pm.check_pending()

    def register_refund_policy(self, policy: RefundPolicy) -> None:
        """Decide refunds with `policy` after every plugin, before commercekit's default.

        `policy` is registered as a `RefundPolicyPlugin` under its `NAME`;
        the defaults are registered again after it, so they still decide
        last. `PaymentSettlement` calls this with its ``policy=``; every
        user of this manager then decides with it. Registering the same
        policy again does nothing.

        Raises:
            ConfigurationError: this manager has another refund policy.
        """
        from commercekit.payments.policy import RefundPolicyPlugin  # noqa: PLC0415 - no cycle

        known = self._pm.get_plugin(RefundPolicyPlugin.NAME)
        if isinstance(known, RefundPolicyPlugin) and known.policy is policy:
            return
        if known is not None:
            raise ConfigurationError(
                f"this plugin manager decides refunds with {known!r} already; "
                "give each refund policy its own PluginManager"
            )
        defaults = [(n, p) for n in DEFAULT_PLUGINS if (p := self._pm.get_plugin(n)) is not None]
        for _, plugin in defaults:
            self._pm.unregister(plugin)
        self._pm.register(RefundPolicyPlugin(policy), name=RefundPolicyPlugin.NAME)
        for name, plugin in defaults:
            self._pm.register(plugin, name=name)

    def unregister(self, plugin: object) -> None:
        """Remove a plugin."""
        self._pm.unregister(plugin)

    def names(self) -> list[str]:
        """The names of the registered plugins (entry-point names for installed ones)."""
        return sorted(str(name) for name, _ in self._pm.list_name_plugin())

    def _notify(self, hook: str, **kwargs: Any) -> None:
        try:
            getattr(self._pm.hook, hook)(**kwargs)
        except Exception:
            logger.exception("plugin hook %s failed", hook)

    # -------------------------------------------------------- reservations
    def reservation_created(self, reservation: Reservation) -> None:
        """Call `commercekit_reservation_created`."""
        self._notify("commercekit_reservation_created", reservation=reservation)

    def reservation_confirmed(self, reservation: Reservation) -> None:
        """Call `commercekit_reservation_confirmed`."""
        self._notify("commercekit_reservation_confirmed", reservation=reservation)

    def reservation_released(self, reservation: Reservation) -> None:
        """Call `commercekit_reservation_released`."""
        self._notify("commercekit_reservation_released", reservation=reservation)

    def reservation_expired(self, reservation: Reservation) -> None:
        """Call `commercekit_reservation_expired`."""
        self._notify("commercekit_reservation_expired", reservation=reservation)

    # ------------------------------------------------------------ payments
    def payment_outcome(self, payment: Payment) -> None:
        """Call `commercekit_payment_outcome`."""
        self._notify("commercekit_payment_outcome", payment=payment)

    def refund_decision(self, case: PaymentCase) -> RefundDecision:
        """Ask `commercekit_refund_decision`: the plugins, then a policy, then the default.

        The first answer wins; see `commercekit.payments.policy` for the order.
        """
        result: RefundDecision | None = self._pm.hook.commercekit_refund_decision(case=case)
        if result is None:  # the default was unregistered and no plugin answered
            from commercekit.payments.policy import DefaultRefundPolicy  # noqa: PLC0415

            result = DefaultRefundPolicy().decide(case)
        return result

    def allocation_order(
        self, lines: tuple[ReservationLine, ...], channel: Channel, owner: str
    ) -> Channel:
        """Ask `commercekit_allocation_order`; the channel with the order chosen (or as it is)."""
        order: list[str] | None = self._pm.hook.commercekit_allocation_order(
            lines=lines, channel=channel, owner=owner
        )
        return channel if order is None else channel.ordered(order)

    # -------------------------------------------------------------- events
    def event_published(self, event: Envelope[Any]) -> None:
        """Call `commercekit_event_published`."""
        self._notify("commercekit_event_published", event=event)

    def event_consumed(self, event: Envelope[Any], group: str) -> None:
        """Call `commercekit_event_consumed`."""
        self._notify("commercekit_event_consumed", event=event, group=group)

    # --------------------------------------------------------------- email
    def email_template(self, name: str, context: Mapping[str, Any]) -> RenderedEmail | None:
        """Ask `commercekit_email_template` for a rendered mail (None: use the templates).

        Use it as a `TemplateRenderer`'s ``override``.
        """
        result: RenderedEmail | None = self._pm.hook.commercekit_email_template(
            name=name, context=context
        )
        return result
