"""ADMIN_EMAILS matches on `normalize_identity` keys, the same as logins and the unique index."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from reference_app.settings import UserSettings

from commercekit.auth import normalize_identity

KELVIN = "\N{KELVIN SIGN}"
LOCAL_PARTS = st.text(
    alphabet=st.characters(categories=("Lu", "Ll", "Lt", "Nd")), min_size=1, max_size=20
)


def _settings(admins: str) -> UserSettings:
    return UserSettings(environment="development", admin_emails=admins)


def test_the_kelvin_sign_twin_of_an_admin_address_is_that_address() -> None:
    settings = _settings("Shopkeeper@Example.com, Élise@example.com")
    assert settings.admin_emails == {"shopkeeper@example.com", "élise@example.com"}
    for twin in (
        f"shop{KELVIN}eeper@example.com",
        "SHOPKEEPER@EXAMPLE.COM",
        "élise@EXAMPLE.com",
        "E\u0301LISE@example.com",
    ):
        # One identity, one account: the unique index makes a second signup a 409.
        assert settings.role_for(twin) == "admin", twin
    assert settings.role_for("shopkeeper2@example.com") == "user"
    assert settings.role_for("elise@example.com") == "user"


@given(LOCAL_PARTS)
def test_every_spelling_of_an_admin_address_matches_and_only_those(local: str) -> None:
    address = f"{local}@example.com"
    settings = _settings(address)
    key = normalize_identity(address)
    assert settings.role_for(address) == "admin"
    for spelling in (address.lower(), address.upper(), address.swapcase(), address.title()):
        same = normalize_identity(spelling) == key  # not always: DOTLESS I becomes I
        assert (settings.role_for(spelling) == "admin") is same
    assert settings.role_for(address.replace("k", KELVIN).replace("K", KELVIN)) == "admin"
    assert settings.role_for(f"x{address}") == "user"
