r"""One normalisation of usernames and email addresses, for uniqueness, sign-in and roles.

```python
from commercekit.auth import normalize_identity

normalize_identity("Élise@Example.com") == normalize_identity("élise@example.com")  # True
normalize_identity("\N{KELVIN SIGN}ate@example.com")  # 'kate@example.com' (KELVIN SIGN is a K)
```

Store the key beside what the user typed, put a unique index on the key,
look users up by it and compare it with the addresses that grant roles.
Python's `str.lower()` and a database's `lower()` disagree on many
characters (PostgreSQL's C locale lowercases ASCII only), so comparing
lowercased strings on both sides lets twins in: an address and its twin
with a KELVIN SIGN (U+212A) for its ``k`` are one address to Python and two
to PostgreSQL. The key is computed in Python only, and the database merely
compares it byte for byte.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_identity"]

_IGNORABLE = re.compile(
    "["
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufff8"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
    "]"
)
"""Unicode's Default_Ignorable_Code_Point: invisible, so they must not make a name new."""

_MAX_ROUNDS = 8
"""NFKC and case folding settle in two rounds at most; this bounds a future surprise."""


def _round(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = _IGNORABLE.sub("", text)
    return unicodedata.normalize("NFKC", text.casefold()).strip()


def normalize_identity(text: str) -> str:
    """The key under which `text` (a username or an email address) is unique.

    Compatibility-normalised (NFKC: full-width letters, ligatures, the
    KELVIN SIGN are their plain letters), case-folded (``É`` is ``é``, ``ß`` is
    ``ss``), without invisible characters (Unicode's default-ignorable code
    points such as ZERO WIDTH SPACE or SOFT HYPHEN), and without surrounding
    whitespace. NFKC and case folding are applied until neither changes the
    text, so the key is stable: ``normalize_identity(normalize_identity(x))
    == normalize_identity(x)`` for every string.

    This is Unicode's NFKC_Casefold, the folding its identifier guidelines
    (UAX #31) give for case-insensitive identifiers. The key is for
    comparison only: show users what they typed.
    """
    key = text
    for _ in range(_MAX_ROUNDS):
        folded = _round(key)
        if folded == key:
            break
        key = folded
    return key
