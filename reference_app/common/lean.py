"""Hot routes served without FastAPI's per-request machinery, with the same answers.

FastAPI spends about 0.2 ms of CPU on each request before and after the
endpoint runs (its middleware, the route match, the dependency solver,
validating and serializing the response model): on the reserve route that
was a third of the inventory service's CPU per reserve. A `LeanRoute`
answers one method and path itself, right inside the service's request
middleware (request id, trace, access line and histogram stay) and before
Starlette's own middleware:

- its `serve` reads what it needs from the request and the whole body,
  validates the body in one pydantic call and encodes the answer once;
- it returns ``None`` for anything it does not answer itself (a body or a
  header that does not validate, another content type): the request then
  goes on to the FastAPI route, body replayed, which gives its usual 4xx
  answer;
- what it raises is answered by the app's own exception handlers, as if the
  FastAPI route had raised it.

The FastAPI route stays the definition of the operation: its OpenAPI
schema, its validation errors, and the same code behind both (a test sends
the same requests with and without the lean route and compares answers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["JSON_TYPE", "LeanRoute", "LeanRoutes"]

JSON_TYPE = "application/json"
"""The content type a lean route reads (exactly, or with parameters such as a charset)."""


@dataclass(frozen=True, slots=True)
class LeanRoute:
    """One method and path answered by `serve` (see the module docstring).

    Attributes:
        method: ``POST``, ``GET``...
        path: the exact path (no parameters).
        serve: ``(request, body) -> response``, or ``None`` to let the
            FastAPI route of the same method and path answer. It gets the
            whole body and must not read it from the request, which keeps
            it for that route.
        json_body: whether it reads a JSON body: a request of another
            content type goes on to the FastAPI route. Without one, the
            content type is not looked at.
    """

    method: str
    path: str
    serve: Callable[[Request, bytes], Awaitable[Response | None]]
    json_body: bool = True


class LeanRoutes:
    """ASGI middleware that serves its `LeanRoute`s and passes every other request on.

    Put it right inside the request middleware, around the app's middleware
    stack (``service_app(lean=...)`` does).
    """

    def __init__(self, app: ASGIApp, routes: Sequence[LeanRoute]) -> None:
        self.app = app
        self.routes = {(route.method, route.path): route for route in routes}
        self._labels: dict[LeanRoute, object] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI call."""
        route = None
        if scope["type"] == "http":
            route = self.routes.get((scope["method"], scope["path"]))
        if route is None:
            await self.app(scope, receive, send)
            return
        body, more = await _read(receive)
        replay = _replay(body, more, receive)
        request = Request(scope, replay)
        if more or (route.json_body and not _is_json(request)):
            await self.app(scope, replay, send)
            return
        label = self._labels.get(route)
        if label is None:
            label = self._labels[route] = _fastapi_route(scope, route)
        scope["route"] = label  # the request middleware's histogram labels by its path
        try:
            response = await route.serve(request, body)
        except Exception as exc:
            handler = _handler_for(scope, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        if response is None:
            await self.app(scope, replay, send)
            return
        await response(scope, replay, send)


_LIMIT = 1 << 20
"""Bodies longer than this are left to FastAPI as they come (its own limit applies)."""


async def _read(receive: Receive) -> tuple[bytes, bool]:
    """The request body and whether more of it was left unread (past `_LIMIT`, or a disconnect)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), False
        if size > _LIMIT:
            return b"".join(chunks), True


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A `receive` that gives `body` again first, then whatever `receive` has left."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return replayed


def _is_json(request: Request) -> bool:
    kind = request.headers.get("content-type")
    return kind is not None and kind.split(";", 1)[0].strip().lower() == JSON_TYPE


def _fastapi_route(scope: Scope, lean: LeanRoute) -> object:
    """The app's own route of the same method and path (the one the OpenAPI schema shows)."""
    for route in scope["app"].router.routes:
        methods = getattr(route, "methods", None) or ()
        if getattr(route, "path", None) == lean.path and lean.method in methods:
            return route
    return lean


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _handler_for(scope: Scope, exc: Exception) -> Handler | None:
    """The app's handler for `exc`: the nearest of its classes, as Starlette picks it."""
    handlers: dict[object, Handler] = scope["app"].exception_handlers
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
