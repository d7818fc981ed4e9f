"""The harness's nginx really reverse-proxies to an ASGI app served by uvicorn."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from commercekit.testing.servers import NginxServer, free_port

PROXY_CONF = Path(__file__).parent / "nginx" / "proxy.conf"

Scope = dict[str, Any]


async def echo_app(scope: Scope, receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """Answer with the request path and headers as JSON."""
    assert scope["type"] == "http"
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = json.dumps({"path": scope["path"], "headers": headers}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ThreadedUvicorn:
    def __init__(self) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            echo_app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def upstream() -> Iterator[ThreadedUvicorn]:
    app = ThreadedUvicorn()
    app.start()
    yield app
    app.stop()


def test_nginx_proxies_to_uvicorn_and_sets_headers(
    nginx_factory: Callable[..., NginxServer], upstream: ThreadedUvicorn
) -> None:
    nginx = nginx_factory(PROXY_CONF, UPSTREAM=f"127.0.0.1:{upstream.port}")

    assert httpx.get(f"{nginx.url}/nginx-health").text == "ok\n"

    response = httpx.get(f"{nginx.url}/api/v1/products", headers={"X-User-Id": "forged"})
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["path"] == "/api/v1/products"
    assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert len(echoed["headers"]["x-request-id"]) == 32
    assert "x-user-id" not in echoed["headers"]  # nginx dropped the client's header
    # nginx logs a request after answering it: give the line a moment to land.
    deadline = time.monotonic() + 5
    while "/api/v1/products" not in nginx.access_log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "/api/v1/products" in nginx.access_log.read_text()


def test_nginx_answers_502_when_the_upstream_is_down(
    nginx_factory: Callable[..., NginxServer],
) -> None:
    nginx = nginx_factory(PROXY_CONF, UPSTREAM=f"127.0.0.1:{free_port()}")
    assert httpx.get(f"{nginx.url}/anything").status_code == 502
