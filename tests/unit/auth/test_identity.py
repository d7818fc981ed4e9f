"""`normalize_identity`: one stable key per identity, whatever Unicode spells it with."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from commercekit.auth import normalize_identity

KELVIN = "\N{KELVIN SIGN}"


@given(st.text())
@example("\u0345")  # COMBINING YPOGEGRAMMENI: case folding undoes NFKC's composition
@example("\u01f0\u0323")  # ǰ with a dot below: folding reorders combining marks
@example("ﷺ")  # one code point that NFKC makes eighteen
@example(" \u200b\u00ad ")
def test_the_key_is_stable(text: str) -> None:
    key = normalize_identity(text)
    assert normalize_identity(key) == key
    assert unicodedata.is_normalized("NFKC", key)
    assert unicodedata.normalize("NFKC", key.casefold()) == key
    assert key == key.strip()


@given(st.text())
@example("\u0131")  # DOTLESS I: its capital is I, another letter's capital too
@example("\u03a3\u03a3")  # SIGMA: lower() makes the final one a FINAL SIGMA
@example("\u0130")  # CAPITAL I WITH DOT ABOVE: lower() adds a combining dot
def test_case_twins_share_one_key(text: str) -> None:
    key = normalize_identity(text)
    assert normalize_identity(text.lower()) == normalize_identity(text.casefold()) == key
    for capitals in (text.upper(), text.swapcase(), text.title()):
        # A spelling in capitals and its lower-case twin are one identity.
        assert normalize_identity(capitals) == normalize_identity(capitals.lower())
        assert normalize_identity(capitals) == normalize_identity(capitals.casefold())
    assert normalize_identity(unicodedata.normalize("NFD", text)) == key
    assert normalize_identity(unicodedata.normalize("NFKD", text)) == key


@given(st.text(alphabet=st.characters(codec="ascii")))
def test_ascii_keys_are_ascii_lowercase(text: str) -> None:
    assert normalize_identity(text) == text.lower().strip()


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (f"shop{KELVIN}eeper@example.com", "shopkeeper@example.com"),
        (f"SHOP{KELVIN}EEPER@EXAMPLE.COM", "shopkeeper@example.com"),
        ("Élise@example.com", "élise@example.com"),
        ("E\u0301lise@example.com", "élise@example.com"),  # decomposed É
        ("ÉLISE", "élise"),
        ("Straße", "STRASSE"),
        ("ｂｏｓｓ@ｅｘａｍｐｌｅ.ｃｏｍ", "boss@example.com"),  # full width  # noqa: RUF001
        ("bo\u200bss@example.com", "boss@example.com"),  # ZERO WIDTH SPACE
        ("bo\u00adss@example.com", "boss@example.com"),  # SOFT HYPHEN
        ("ﬁona", "fiona"),  # the fi ligature
        ("  boss@example.com ", "boss@example.com"),
    ],
)
def test_twins_are_one_identity(one: str, other: str) -> None:
    assert normalize_identity(one) == normalize_identity(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [("boss@example.com", "bos@example.com"), ("élise", "elise"), ("a.b", "ab")],
)
def test_different_identities_stay_apart(one: str, other: str) -> None:
    assert normalize_identity(one) != normalize_identity(other)


def test_python_and_postgresql_lower_disagree_but_the_key_does_not() -> None:
    twin = f"shop{KELVIN}eeper@example.com"
    assert twin.lower() == "shopkeeper@example.com"  # Python folds the KELVIN SIGN...
    assert twin.encode("ascii", "replace") != b"shopkeeper@example.com"  # ...C-locale lower() not
    assert normalize_identity(twin) == "shopkeeper@example.com"
