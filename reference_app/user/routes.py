"""``/api/v1/auth/*``: signup, login, refresh, logout, verify (for nginx), me."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Cookie, Header, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from commercekit.auth import (
    AccessTokens,
    HashingBusy,
    IssuedRefreshToken,
    normalize_identity,
    verify,
)
from commercekit.errors import (
    InvalidRefreshToken,
    InvalidToken,
    RefreshTokenExpired,
    RefreshTokenReused,
    TokenExpired,
)
from commercekit.events import Envelope, UserCreated
from reference_app.common import ApiError, CurrentUser, error_response, request_id
from reference_app.common.errors import errors
from reference_app.common.lean import LeanRoute
from reference_app.settings import UserSettings
from reference_app.user.deps import (
    OutboxDep,
    PasswordsDep,
    RefreshDep,
    SessionDep,
    SettingsDep,
    TokensDep,
    get_services,
)
from reference_app.user.models import User
from reference_app.user.schemas import (
    AccessTokenPublic,
    LoginRequest,
    LoginResponse,
    MessagePublic,
    SignupRequest,
    UserPublic,
    WhoAmI,
)

__all__ = [
    "LEAN_ROUTES",
    "REFRESH_COOKIE",
    "REFRESH_COOKIE_PATH",
    "VERIFY_CACHE_HEADER",
    "VERIFY_CACHE_SPREAD",
    "router",
]

REFRESH_COOKIE = "refreshToken"
REFRESH_COOKIE_PATH = "/api/v1/auth"
EVENT_SOURCE = "user-service"
VERIFY_CACHE_HEADER = "X-Accel-Expires"
"""nginx's header for how many seconds it may cache an answer (0: not at all)."""
VERIFY_CACHE_SPREAD = 0.5
"""Answers are kept 50 to 100% of ``VERIFY_CACHE_SECONDS``: those cached together expire apart."""

log = logging.getLogger("reference_app.user")
router = APIRouter(prefix="/api/v1/auth", tags=["auth"], responses=errors(400, 422, 503))

RefreshCookie = Annotated[str | None, Cookie(alias=REFRESH_COOKIE)]
_BAD_CREDENTIALS = "invalid email/username or password"


def _busy(busy: HashingBusy) -> ApiError:
    """Every password-check slot is taken: a 503 at once, before anything waits."""
    log.warning("password checks busy: login or signup refused")
    return ApiError(
        503,
        "too many sign-ins at once, retry later",
        code="password_checks_busy",
        headers={"Retry-After": str(max(1, round(busy.retry_after)))},
    )


def _set_refresh_cookie(
    response: Response, issued: IssuedRefreshToken, settings: UserSettings
) -> None:
    max_age = int((issued.expires_at - dt.datetime.now(dt.UTC)).total_seconds())
    response.set_cookie(
        REFRESH_COOKIE,
        issued.token,
        max_age=max(max_age, 0),
        path=REFRESH_COOKIE_PATH,
        httponly=True,
        secure=not settings.development,
        samesite="strict",
    )


def _cleared_cookie(settings: UserSettings) -> dict[str, str]:
    """The ``Set-Cookie`` header that removes the refresh cookie (for error answers)."""
    response = Response()
    _clear_refresh_cookie(response, settings)
    return {"set-cookie": response.headers["set-cookie"]}


def _clear_refresh_cookie(response: Response, settings: UserSettings) -> None:
    response.delete_cookie(
        REFRESH_COOKIE,
        path=REFRESH_COOKIE_PATH,
        httponly=True,
        secure=not settings.development,
        samesite="strict",
    )


@router.post("/signup", status_code=201, responses=errors(409, s409="username or email taken"))
async def signup(
    body: SignupRequest,
    *,
    session: SessionDep,
    passwords: PasswordsDep,
    outbox: OutboxDep,
    settings: SettingsDep,
) -> MessagePublic:
    """Create a user, and a ``user.created`` event in the same transaction.

    The username and the email are each unique as `normalize_identity`
    keys (``Élise`` and ``élise`` are one user): a twin is a 409. The role
    is matched on the same key.
    """
    try:
        password_hash = await passwords.hash(body.password)
    except HashingBusy as busy:
        raise _busy(busy) from None
    user = User(
        id=uuid.uuid4(),
        username=body.username,
        email=body.email,
        password_hash=password_hash,
        role=settings.role_for(body.email),
    )
    event = Envelope.wrap(
        UserCreated(user_id=str(user.id), username=user.username, email=user.email),
        source=EVENT_SOURCE,
        correlation_id=request_id(),
    )
    try:
        async with session.begin():
            session.add(user)
            await session.flush()  # the unique indexes decide, even between racing signups
            await outbox.add(session, event)
    except IntegrityError:
        raise ApiError(409, "username or email already taken", code="user_exists") from None
    log.info("user signed up", extra={"user_id": str(user.id), "role": user.role})
    return MessagePublic(message="user created")


@router.post("/login", responses=errors(401, s401="bad credentials"))
async def login(
    body: LoginRequest,
    response: Response,
    *,
    session: SessionDep,
    passwords: PasswordsDep,
    tokens: TokensDep,
    refresh: RefreshDep,
    settings: SettingsDep,
) -> LoginResponse:
    """Check the password; answer an access token and set the refresh cookie.

    The email or username is looked up by its `normalize_identity` key, so
    any spelling of it that is the same identity signs in.
    """
    try:
        passwords.ensure_room()  # refuse before the database is asked anything
    except HashingBusy as busy:
        raise _busy(busy) from None
    if body.email:
        where = User.email_key == normalize_identity(body.email)
    else:
        where = User.username_key == normalize_identity(body.username or "")
    user = await session.scalar(select(User).where(where))
    await session.commit()  # no connection is held while the password is checked
    # An unknown user costs a dummy verification too: timing does not tell who exists.
    try:
        ok, new_hash = await passwords.verify_and_update(
            user.password_hash if user else None, body.password
        )
    except HashingBusy as busy:
        raise _busy(busy) from None
    if not ok or user is None:
        raise ApiError(401, _BAD_CREDENTIALS, code="invalid_credentials")
    if new_hash is not None:
        user.password_hash = new_hash
    await session.commit()
    user_id = str(user.id)
    access = tokens.issue(user_id, role=user.role)
    issued = await refresh.issue(user_id, role=user.role)
    _set_refresh_cookie(response, issued, settings)
    log.info("user logged in", extra={"user_id": user_id})
    return LoginResponse(
        access_token=access,
        user=UserPublic(id=user_id, username=user.username, email=user.email),
    )


@router.post("/refresh", responses=errors(401, 403, s403="reuse: the session is revoked"))
async def refresh_tokens(
    response: Response,
    tokens: TokensDep,
    refresh: RefreshDep,
    settings: SettingsDep,
    cookie: RefreshCookie = None,
) -> AccessTokenPublic:
    """Rotate the refresh cookie and answer a new access token."""
    if not cookie:
        raise ApiError(401, "no refresh token", code="invalid_refresh_token")
    try:
        issued = await refresh.rotate(cookie)
    except RefreshTokenReused:
        log.warning("refresh token reuse: family revoked")
        raise ApiError(
            403,
            "refresh token reuse detected: sign in again",
            code="refresh_token_reused",
            headers=_cleared_cookie(settings),
        ) from None
    except RefreshTokenExpired:
        cleared = _cleared_cookie(settings)
        raise ApiError(
            401, "refresh token expired", code="refresh_token_expired", headers=cleared
        ) from None
    except InvalidRefreshToken:
        cleared = _cleared_cookie(settings)
        raise ApiError(
            401, "invalid refresh token", code="invalid_refresh_token", headers=cleared
        ) from None
    _set_refresh_cookie(response, issued, settings)
    return AccessTokenPublic(access_token=tokens.issue(issued.user_id, role=issued.role))


@router.post("/logout", status_code=204, response_class=Response)
async def logout(
    refresh: RefreshDep, settings: SettingsDep, cookie: RefreshCookie = None
) -> Response:
    """End the session: revoke the refresh cookie's family and clear the cookie."""
    if cookie:
        await refresh.revoke(cookie)
    response = Response(status_code=204)
    _clear_refresh_cookie(response, settings)
    return response


@router.get("/verify", responses=errors(401), response_class=Response)
async def verify_access(
    tokens: TokensDep, settings: SettingsDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """For nginx ``auth_request``: 200 with ``X-User-Id`` / ``X-User-Role``, or 401.

    A 200 says in ``X-Accel-Expires`` how long nginx may reuse it for this
    exact ``Authorization`` value: ``VERIFY_CACHE_SECONDS`` at most (less a
    random share up to `VERIFY_CACHE_SPREAD`), and never past the token's
    expiry. Refusals are never cached.
    """
    return _verify_answer(authorization, tokens, settings)


def _verify_answer(
    authorization: str | None, tokens: AccessTokens, settings: UserSettings
) -> Response:
    try:
        principal = verify(authorization, tokens)
    except TokenExpired:
        return error_response(
            401,
            "access token expired",
            code="token_expired",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"', VERIFY_CACHE_HEADER: "0"},
        )
    except InvalidToken:
        return error_response(
            401,
            "a valid access token is required",
            headers={"WWW-Authenticate": "Bearer", VERIFY_CACHE_HEADER: "0"},
        )
    headers = principal.headers()
    cache_for = principal.cacheable_for(settings.verify_cache_seconds, spread=VERIFY_CACHE_SPREAD)
    if cache_for > 0:
        headers[VERIFY_CACHE_HEADER] = str(cache_for)
    return Response(status_code=200, headers=headers)


async def lean_verify(request: Request, _: bytes) -> Response:
    """`verify_access`, answered by `LEAN_ROUTES` without FastAPI's per-request work.

    Every token is checked here once per ``VERIFY_CACHE_SECONDS`` (and every
    request when the gateway's cache is off).
    """
    services = await get_services(request)
    return _verify_answer(request.headers.get("authorization"), services.tokens, services.settings)


LEAN_ROUTES = (LeanRoute("GET", "/api/v1/auth/verify", lean_verify, json_body=False),)
"""The routes the service answers without FastAPI's per-request work (the token check)."""


@router.get("/me", responses=errors(401))
async def me(user: CurrentUser, session: SessionDep) -> WhoAmI:
    """The identity the gateway passed on, with the user's name and email."""
    answer = WhoAmI(id=user.user_id, role=user.role)
    try:
        key = uuid.UUID(user.user_id)
    except ValueError:
        return answer
    row = await session.get(User, key)
    if row is not None:
        answer = answer.model_copy(update={"username": row.username, "email": row.email})
    return answer
