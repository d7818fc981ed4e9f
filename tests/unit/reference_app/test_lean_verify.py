"""The lean token check answers every Authorization header as the FastAPI route does."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from reference_app.settings import UserSettings
from reference_app.user.deps import UserServices
from reference_app.user.main import create_app

from commercekit.auth import AccessTokens

SECRET = "s" * 48
SETTINGS = UserSettings(environment="development", jwt_access_secret=SECRET)
TOKENS = AccessTokens(SETTINGS.jwt)
VERIFY = "/api/v1/auth/verify"


def _claims(**overrides: Any) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"sub": "user-1", "role": "user", "iss": "commercekit", "aud": "commercekit",
            "iat": now, "exp": now + dt.timedelta(minutes=5), **overrides}  # fmt: skip


def _authorizations() -> list[str | None]:
    genuine = TOKENS.issue("user-1", role="admin")
    head, body, signature = genuine.split(".")
    none_header = base64.urlsafe_b64encode(json.dumps({"alg": "none"}).encode()).rstrip(b"=")
    return [
        f"Bearer {genuine}",
        f"bearer   {genuine} ",
        f"Bearer {TOKENS.issue('u', now=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))}",
        f"Bearer {head}.{body}.{signature[:-2]}AA",  # forged signature
        f"Bearer {none_header.decode()}.{body}.",  # alg none
        "Bearer " + jwt.encode(_claims(), "x" * 48, algorithm="HS256", headers={"typ": "at+jwt"}),
        "Bearer " + jwt.encode(_claims(aud="elsewhere"), SECRET, algorithm="HS256"),
        "Bearer " + jwt.encode(_claims(), SECRET, algorithm="HS384"),
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "",
        None,
    ]


def _app(lean: bool) -> FastAPI:
    app = create_app(SETTINGS, lean=lean)  # no lifespan: only the check's parts are wired
    app.state.user = UserServices(
        settings=SETTINGS, tokens=TOKENS,
        engine=None, sessions=None, passwords=None, refresh=None, outbox=None,  # type: ignore[arg-type]
    )  # fmt: skip
    return app


async def _answers(lean: bool, authorizations: list[str | None]) -> list[tuple[Any, ...]]:
    answers = []
    transport = httpx.ASGITransport(app=_app(lean))
    async with httpx.AsyncClient(transport=transport, base_url="http://user") as http:
        for authorization in authorizations:
            headers = {} if authorization is None else {"Authorization": authorization}
            answer = await http.get(VERIFY, headers=headers)
            cached = answer.headers.get("x-accel-expires")
            answers.append((
                answer.status_code,
                answer.content and answer.json(),
                answer.headers.get("x-user-id"),
                answer.headers.get("x-user-role"),
                answer.headers.get("www-authenticate"),
                None if cached is None else 0 if cached == "0" else 30 <= int(cached) <= 60,
            ))  # fmt: skip
    return answers


async def test_lean_and_fastapi_checks_accept_and_refuse_the_same_headers_alike() -> None:
    authorizations = _authorizations()
    lean, plain = await _answers(True, authorizations), await _answers(False, authorizations)
    assert [answer[0] for answer in lean] == [200, 200] + [401] * 10
    assert lean[0][2:4] == ("user-1", "admin")
    assert lean[0][5] is True  # kept 30 to 60 s
    assert all(answer[5] == 0 for answer in lean[2:])  # a refusal is never kept
    for asked, (lean_answer, plain_answer) in enumerate(zip(lean, plain, strict=True)):
        assert lean_answer == plain_answer, f"header {asked}: {authorizations[asked]!r}"


@pytest.mark.parametrize("method", ["HEAD", "POST"])
async def test_other_methods_get_the_routes_own_answer(method: str) -> None:
    answers = []
    for lean in (True, False):
        transport = httpx.ASGITransport(app=_app(lean))
        async with httpx.AsyncClient(transport=transport, base_url="http://user") as http:
            answers.append((await http.request(method, VERIFY)).status_code)
    assert answers[0] == answers[1]
