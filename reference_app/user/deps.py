"""The user service's adapters, built in the lifespan, and their dependency aliases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from commercekit.auth import AccessTokens, PasswordHashingPool, RefreshTokens
from commercekit.events import Outbox
from reference_app.settings import UserSettings

__all__ = [
    "OutboxDep",
    "PasswordsDep",
    "RefreshDep",
    "ServicesDep",
    "SessionDep",
    "SettingsDep",
    "TokensDep",
    "UserServices",
    "get_services",
]


@dataclass(frozen=True, slots=True)
class UserServices:
    """Everything the routes use; tests may swap any part through ``dependency_overrides``."""

    settings: UserSettings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    passwords: PasswordHashingPool
    tokens: AccessTokens
    refresh: RefreshTokens
    outbox: Outbox


async def get_services(request: Request) -> UserServices:
    """The services wired by the lifespan."""
    services: UserServices = request.app.state.user
    return services


ServicesDep = Annotated[UserServices, Depends(get_services)]


async def get_settings(services: ServicesDep) -> UserSettings:
    """The service's settings."""
    return services.settings


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    """A database session for the request (the route begins its own transaction)."""
    async with services.sessions() as session:
        yield session


async def get_passwords(services: ServicesDep) -> PasswordHashingPool:
    """The password checks' bounded pool (`HashingBusy` when it is full)."""
    return services.passwords


async def get_tokens(services: ServicesDep) -> AccessTokens:
    """The access-token issuer and verifier."""
    return services.tokens


async def get_refresh(services: ServicesDep) -> RefreshTokens:
    """The refresh-token families."""
    return services.refresh


async def get_outbox(services: ServicesDep) -> Outbox:
    """The transactional outbox."""
    return services.outbox


SettingsDep = Annotated[UserSettings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session)]
PasswordsDep = Annotated[PasswordHashingPool, Depends(get_passwords)]
TokensDep = Annotated[AccessTokens, Depends(get_tokens)]
RefreshDep = Annotated[RefreshTokens, Depends(get_refresh)]
OutboxDep = Annotated[Outbox, Depends(get_outbox)]
