"""A stack started as ``python -m reference_app.launch`` does signs with a secret of its own.

The launcher runs in development mode; commercekit's development secret
stands in the source, so a token minted with it must not pass there.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import httpx
import jwt
from reference_app.launch import SECRET_VARIABLES, LocalStack, UvicornServer, jwt_secret_env

from commercekit.auth.tokens import DEVELOPMENT_SECRET
from tests.e2e.reliability.conftest import Tried

PASSWORD = "correct horse battery staple"


def admin_token(secret: str) -> str:
    """An admin access token as the user service makes them, signed with `secret`."""
    now = dt.datetime.now(dt.UTC)
    claims = {
        "sub": str(uuid.uuid4()),
        "role": "admin",
        "iss": "commercekit",
        "aud": "commercekit",
        "iat": now,
        "exp": now + dt.timedelta(minutes=5),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "at+jwt"})


def test_a_launched_stack_refuses_tokens_signed_with_the_development_secret(
    stack: LocalStack, tmp_path: Path, tried: Tried
) -> None:
    # The environment main() gives the services: development, no secret set.
    env = {k: v for k, v in stack.env.items() if k not in SECRET_VARIABLES}
    env["ENVIRONMENT"] = "development"
    env.update(jwt_secret_env(env))
    assert env["JWT_ACCESS_SECRET"] != DEVELOPMENT_SECRET
    with (
        UvicornServer(tmp_path, "reference_app.user.main:app_from_env", env=env) as user,
        httpx.Client(base_url=user.url, timeout=10) as http,
    ):
        forged = http.get(
            "/api/v1/auth/verify",
            headers={"Authorization": f"Bearer {admin_token(DEVELOPMENT_SECRET)}"},
        )
        assert forged.status_code == 401, forged.text
        # The control: the service's own tokens pass.
        name = f"l{uuid.uuid4().hex[:12]}"
        body = {"username": name, "email": f"{name}@example.com", "password": PASSWORD}
        assert http.post("/api/v1/auth/signup", json=body).status_code == 201
        login = http.post("/api/v1/auth/login", json={"username": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
        token = login.json()["accessToken"]
        mine = http.get("/api/v1/auth/verify", headers={"Authorization": f"Bearer {token}"})
        assert mine.status_code == 200, mine.text
    tried(
        "attack rejected",
        "an admin token signed with commercekit's development secret, against a stack "
        "the launcher started (development, no secret given): 401",
    )
