"""The plugin manager: typed hooks, entry-point discovery, failures contained."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pluggy import PluginValidationError

from commercekit.email.templates import RenderedEmail, TemplateRenderer
from commercekit.plugins import PluginManager, hookimpl
from commercekit.reservations import Reservation, ReservationLine, ReservationStatus

DEMO = Path(__file__).parent / "demo_plugin"


def _reservation(status: ReservationStatus = ReservationStatus.EXPIRED) -> Reservation:
    now = dt.datetime.now(dt.UTC)
    return Reservation(
        id="r-1",
        status=status,
        owner="u",
        lines=(ReservationLine(sku="A", quantity=1),),
        created_at=now,
        updated_at=now,
        expires_at=now,
    )


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    @hookimpl
    def commercekit_reservation_created(self, reservation: Reservation) -> None:
        self.calls.append(("created", reservation.id))

    @hookimpl
    def commercekit_reservation_confirmed(self, reservation: Reservation) -> None:
        self.calls.append(("confirmed", reservation.id))

    @hookimpl
    def commercekit_reservation_released(self, reservation: Reservation) -> None:
        self.calls.append(("released", reservation.id))

    @hookimpl
    def commercekit_reservation_expired(self, reservation: Reservation) -> None:
        self.calls.append(("expired", reservation.id))


class Quiet:
    """Listens to expiries only."""

    def __init__(self) -> None:
        self.expired: list[str] = []

    @hookimpl
    def commercekit_reservation_expired(self, reservation: Reservation) -> None:
        self.expired.append(reservation.id)


def test_registered_plugins_hear_the_lifecycle() -> None:
    recorder, quiet = Recorder(), Quiet()
    plugins = PluginManager([recorder, quiet], load_entrypoints=False)
    plugins.reservation_created(_reservation(ReservationStatus.PENDING))
    plugins.reservation_confirmed(_reservation(ReservationStatus.CONFIRMED))
    plugins.reservation_released(_reservation(ReservationStatus.RELEASED))
    plugins.reservation_expired(_reservation())
    assert recorder.calls == [
        ("created", "r-1"),
        ("confirmed", "r-1"),
        ("released", "r-1"),
        ("expired", "r-1"),
    ]
    assert quiet.expired == ["r-1"]


def test_a_misspelled_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def commercekit_reservation_expird(self, reservation: Reservation) -> None: ...

    with pytest.raises(PluginValidationError, match="unknown hook"):
        PluginManager([Typo()], load_entrypoints=False)


def test_a_failing_notification_hook_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        @hookimpl
        def commercekit_reservation_expired(self, reservation: Reservation) -> None:
            raise RuntimeError("audit log full")

    PluginManager([Broken()], load_entrypoints=False).reservation_expired(_reservation())
    assert "commercekit_reservation_expired failed" in caplog.text


def test_the_first_email_template_wins_and_none_falls_through() -> None:
    class Declines:
        @hookimpl
        def commercekit_email_template(self, name: str, context: object) -> None:
            return None

    class Welcomes:
        @hookimpl
        def commercekit_email_template(self, name: str, context: object) -> RenderedEmail | None:
            return (
                RenderedEmail(subject="hi", html="<p>hi</p>", text="hi")
                if name == "welcome"
                else None
            )

    plugins = PluginManager([Welcomes(), Declines()], load_entrypoints=False)
    assert plugins.email_template("welcome", {}) == RenderedEmail("hi", "<p>hi</p>", "hi")
    assert plugins.email_template("refund_issued", {}) is None
    renderer = TemplateRenderer(override=plugins.email_template)
    assert renderer.render("welcome", {"username": "ann"}).subject == "hi"


def test_an_installed_plugin_package_is_discovered_by_its_entry_point(tmp_path: Path) -> None:
    """Install a real package (with a `commercekit` entry point) and see its hooks called."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--disable-pip-version-check", "--target", str(target), str(DEMO)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    probe = textwrap.dedent(
        """
        import datetime as dt
        import commercekit_demo
        from commercekit.plugins import PluginManager
        from commercekit.reservations import Reservation, ReservationLine
        now = dt.datetime.now(dt.UTC)
        hold = Reservation(id="r-9", status="EXPIRED", owner="u", created_at=now,
                           updated_at=now, expires_at=now,
                           lines=(ReservationLine(sku="A", quantity=1),))
        plugins = PluginManager()
        assert "demo" in plugins.names(), plugins.names()
        plugins.reservation_expired(hold)
        assert commercekit_demo.EXPIRED == ["r-9"], commercekit_demo.EXPIRED
        mail = plugins.email_template("welcome", {"username": "ann"})
        print(mail.subject)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Welcome from the demo plugin, ann"
