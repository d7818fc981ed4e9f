"""Request and response bodies of the user service (the original's JSON names)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from commercekit.auth import normalize_identity

__all__ = [
    "AccessTokenPublic",
    "LoginRequest",
    "LoginResponse",
    "MessagePublic",
    "SignupRequest",
    "UserPublic",
    "WhoAmI",
]

_NO_NUL = r"^[^\x00]*$"  # PostgreSQL text refuses NUL

Username = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=3, max_length=50, pattern=r"^[\w.-]+$")
]
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True,
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$",
    ),
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=128)]

_MAX_KEY_BYTES = 2000
"""A `normalize_identity` key must fit a PostgreSQL B-tree entry (about 2,700 bytes).

NFKC may make one character eighteen (U+FDFA), so a name within its
length can still have a key too long for the unique index.
"""


class SignupRequest(BaseModel):
    """``POST /api/v1/auth/signup``."""

    model_config = ConfigDict(extra="forbid")

    username: Username
    email: Email
    password: Password

    @model_validator(mode="after")
    def _keys_fit(self) -> Self:
        for field in ("username", "email"):
            if len(normalize_identity(getattr(self, field)).encode()) > _MAX_KEY_BYTES:
                raise ValueError(f"{field} is too long once normalised")
        return self


class LoginRequest(BaseModel):
    """``POST /api/v1/auth/login``: an email or a username, and the password."""

    model_config = ConfigDict(extra="forbid")

    email: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=_NO_NUL)]
        | None
    ) = None
    username: (
        Annotated[str, StringConstraints(strip_whitespace=True, max_length=50, pattern=_NO_NUL)]
        | None
    ) = None
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]

    @model_validator(mode="after")
    def _one_identifier(self) -> Self:
        if not (self.email or self.username):
            raise ValueError("give an email or a username")
        return self


class MessagePublic(BaseModel):
    """A short confirmation."""

    message: str


class UserPublic(BaseModel):
    """A user as the API shows them."""

    id: str
    username: str
    email: str


class LoginResponse(BaseModel):
    """The answer of a successful login (the refresh token is in a cookie)."""

    access_token: str = Field(serialization_alias="accessToken")
    user: UserPublic


class AccessTokenPublic(BaseModel):
    """The answer of a successful refresh."""

    access_token: str = Field(serialization_alias="accessToken")


class WhoAmI(BaseModel):
    """The identity the gateway passed to the service."""

    id: str
    role: str
    username: str | None = None
    email: str | None = None
