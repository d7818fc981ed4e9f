"""Talking to the stack's gateway as a client: one shared set of helpers for the e2e tests."""

from __future__ import annotations

import itertools
from http.cookies import SimpleCookie
from typing import Any

import httpx
from reference_app.launch import LocalStack

_addresses = itertools.count(2)


def loopback_address() -> str:
    """A loopback address no other client of this run used: its own rate-limit bucket."""
    n = next(_addresses)
    return f"127.1.{n // 250}.{n % 250 + 2}"


def gateway_client(stack: LocalStack, *, timeout: float = 30) -> httpx.Client:
    """A client of the stack's gateway from its own loopback address."""
    transport = httpx.HTTPTransport(local_address=loopback_address())
    return httpx.Client(base_url=stack.gateway_url, transport=transport, timeout=timeout)


def assert_json_error(
    response: httpx.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """The response is the shared JSON error body with `status` (and `code`); returns it."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    error: dict[str, Any] = response.json()["error"]
    assert error["code"]
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


def refresh_cookie(response: httpx.Response) -> str:
    """The refresh token a response sets (the Secure cookie is never sent back over http)."""
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("set-cookie"):
        jar.load(header)
    return jar["refreshToken"].value
