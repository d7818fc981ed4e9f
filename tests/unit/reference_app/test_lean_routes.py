"""A lean route answers what it can and leaves everything else to its FastAPI route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, ValidationError
from reference_app.common import ApiError, service_app
from reference_app.common.lean import JSON_TYPE, LeanRoute
from starlette.requests import Request
from starlette.responses import Response


class Echo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    word: str


class Boom(Exception):
    pass


async def lean_echo(request: Request, body: bytes) -> Response | None:
    try:
        echo = Echo.model_validate_json(body)
    except ValidationError:
        return None
    if echo.word == "refuse":
        raise ApiError(409, "refused", code="refused")
    if echo.word == "boom":
        raise Boom
    return Response(json.dumps({"word": echo.word, "by": "lean"}), 201, media_type=JSON_TYPE)


def make_app(lean: bool) -> tuple[FastAPI, list[str]]:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = service_app(
        "test", lifespan=lifespan, lean=[LeanRoute("POST", "/echo", lean_echo)] if lean else ()
    )
    served: list[str] = []

    @app.post("/echo", status_code=201)
    async def echo(body: Echo) -> dict[str, str]:
        served.append(body.word)
        if body.word == "refuse":
            raise ApiError(409, "refused", code="refused")
        return {"word": body.word, "by": "fastapi"}

    @app.post("/other")
    async def other() -> dict[str, str]:
        return {"by": "fastapi"}

    @app.get("/crash")
    async def crash() -> None:
        raise Boom

    return app, served


@pytest.fixture
async def lean() -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    app, served = make_app(lean=True)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client, served


async def test_the_lean_route_answers_a_valid_request_itself(
    lean: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, served = lean
    answer = await client.post("/echo", json={"word": "hi"})
    assert (answer.status_code, answer.json()) == (201, {"word": "hi", "by": "lean"})
    assert answer.headers["content-type"] == JSON_TYPE
    assert answer.headers["x-request-id"]  # inside the request middleware
    assert served == []
    metrics = (await client.get("/metrics")).text
    assert 'route="/echo",status="201"' in metrics


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"word": 1}', {"content-type": JSON_TYPE}),  # does not validate
        (b'{"word": "hi"', {"content-type": JSON_TYPE}),  # not JSON
        (b'{"word": "hi"}', {"content-type": "text/plain"}),  # another type
        (b'{"word": "hi"}', {}),  # no type
        (b"", {"content-type": JSON_TYPE}),
    ],
)
async def test_what_the_lean_route_declines_gets_the_fastapi_answer_body_and_all(
    content: bytes, headers: dict[str, str]
) -> None:
    answers = []
    for lean in (True, False):
        app, _ = make_app(lean)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.post("/echo", content=content, headers=headers)
        answers.append((answer.status_code, answer.json()))
    assert answers[0] == answers[1]


async def test_a_declined_request_reaches_fastapi_with_its_whole_body(
    lean: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, served = lean
    answer = await client.post(
        "/echo", content=b'{"word": "hi"}', headers={"content-type": "application/json-seq"}
    )
    assert answer.status_code == 422
    big = "x" * (2 << 20)  # past what the lean route reads: FastAPI gets it as it streams
    answer = await client.post("/echo", json={"word": big})
    assert answer.status_code == 201
    assert answer.json()["by"] == "fastapi"
    assert served == [big]


async def test_errors_are_answered_by_the_apps_handlers(
    lean: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, _ = lean
    refused = await client.post("/echo", json={"word": "refuse"})
    assert refused.status_code == 409
    assert refused.json() == {"error": {"code": "refused", "message": "refused"}}
    boom = await client.post("/echo", json={"word": "boom"})
    assert boom.status_code == 500
    assert boom.json()["error"]["code"] == "internal_error"
    assert boom.headers["x-request-id"]


async def test_an_unexpected_error_of_a_fastapi_route_keeps_the_request_id(
    lean: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, _ = lean
    rid = "c0ffee" * 5 + "00"
    crash = await client.get("/crash", headers={"x-request-id": rid})
    assert crash.status_code == 500
    assert crash.json()["error"]["code"] == "internal_error"
    assert crash.headers["x-request-id"] == rid  # the request middleware is the outermost layer
    metrics = (await client.get("/metrics")).text
    assert 'route="/crash",status="500"' in metrics


async def test_other_paths_and_methods_pass_by(
    lean: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, _ = lean
    assert (await client.post("/other")).json() == {"by": "fastapi"}
    assert (await client.get("/echo")).status_code == 405
