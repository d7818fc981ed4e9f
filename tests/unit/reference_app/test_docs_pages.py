"""Every service's docs pages load their scripts and styles from the service, not a CDN."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from reference_app.common.app import DOCS_ASSETS_URL
from reference_app.demo.main import create_app as demo
from reference_app.demo.main import demo_settings
from reference_app.email.main import create_app as email
from reference_app.inventory.main import create_app as inventory
from reference_app.payment.main import create_app as payment
from reference_app.settings import (
    EmailSettings,
    InventorySettings,
    PaymentSettings,
    UserSettings,
    WorkerSettings,
)
from reference_app.user.main import create_app as user
from reference_app.worker.main import create_app as worker

_DEVELOPMENT: dict[str, Any] = {"environment": "development"}

APPS: dict[str, Callable[[], FastAPI]] = {
    "user": lambda: user(UserSettings(**_DEVELOPMENT)),
    "inventory": lambda: inventory(InventorySettings(**_DEVELOPMENT)),
    "payment": lambda: payment(PaymentSettings(**_DEVELOPMENT)),
    "email": lambda: email(EmailSettings(**_DEVELOPMENT)),
    "worker": lambda: worker(WorkerSettings(**_DEVELOPMENT)),
    "demo": lambda: demo(demo_settings()),
}


class _Assets(HTMLParser):
    """The URLs a page's ``<script src>`` and ``<link href>`` load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = {"script": "src", "link": "href"}.get(tag)
        self.urls.extend(v for k, v in attrs if k == wanted and v)


def _client(app: FastAPI) -> httpx.AsyncClient:
    """A client of `app` without its lifespan: the pages and their assets need no backend."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service")


def _assets(page: str) -> list[str]:
    parser = _Assets()
    parser.feed(page)
    return parser.urls


@pytest.mark.parametrize("service", sorted(APPS))
@pytest.mark.parametrize(
    ("page", "script"), [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")]
)
async def test_docs_pages_load_their_assets_from_the_service(
    service: str, page: str, script: str
) -> None:
    async with _client(APPS[service]()) as client:
        html = await client.get(page)
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        urls = _assets(html.text)
        assert f"{DOCS_ASSETS_URL}/{script}" in urls
        for url in urls:
            assert url.startswith(f"{DOCS_ASSETS_URL}/"), f"{service} {page} loads {url}"
            asset = await client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
        # The document the page renders is the service's own.
        schema = (await client.get("/openapi.json")).json()
        assert schema["info"]["title"].endswith(f"{service} service")


async def test_a_missing_asset_is_a_json_404() -> None:
    async with _client(APPS["inventory"]()) as client:
        answer = await client.get(f"{DOCS_ASSETS_URL}/no-such-file.js")
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"
