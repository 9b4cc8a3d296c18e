"""The pages' routes without a browser: what is open with keys set, what the schema says about keys,
and that nothing served points outside the service. Runs wherever the suite runs."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from in_process import app_client
from pydantic import SecretStr

from service.api.auth import ApiKeyMiddleware
from service.api.pages import STATIC_DIR
from service.metrics import Metrics
from service.settings import Settings

KEY = "pages-key"
PAGES = ["/", "/ui", "/docs", "/redoc"]
# An absolute or protocol-relative URL where a browser would fetch it: src=, href=, url(...), import.
FETCHED_URL = re.compile(r"""(?:\b(?:src|href|action)\s*=\s*["']?|url\(\s*["']?|@import\s+["']?)\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.I)


@pytest.fixture
async def keyed(tiny_bundle: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(Settings(model_path=tiny_bundle, max_text_chars=1000, api_keys=SecretStr(KEY))) as (client, _):
        yield client


async def test_pages_and_their_assets_are_open_data_is_not(keyed: httpx.AsyncClient) -> None:
    assets = ["/static/viewer.js", "/static/viewer.css", "/static/favicon.svg", "/favicon.ico", "/openapi.json"]
    assets += ["/static/vendor/swagger-ui/swagger-ui-bundle.js", "/static/vendor/swagger-ui/swagger-ui.css"]
    assets += ["/static/vendor/redoc/redoc.standalone.js"]
    for path in PAGES + assets:
        assert (await keyed.get(path)).status_code == 200, path
    for method, path in (("POST", "/ner"), ("GET", "/model"), ("POST", "/evaluate"), ("GET", "/metrics"), ("GET", "/static-not")):
        assert (await keyed.request(method, path)).status_code == 401, path
    assert (await keyed.get("/static/nothing.js")).status_code == 404  # open prefix, but only the package's files
    assert (await keyed.post("/ner", json={"text": "p53"}, headers={"X-API-Key": KEY})).status_code == 200


def test_dot_dot_under_static_is_not_open() -> None:
    middleware = ApiKeyMiddleware(app=lambda *a: None, digests=[], metrics=Metrics(), metrics_public=False)  # type: ignore[arg-type]
    assert middleware.is_open("/static/viewer.js") and middleware.is_open("/docs")
    assert not middleware.is_open("/static/../model") and not middleware.is_open("/model")


async def test_schema_states_the_key_only_when_keys_are_set(keyed: httpx.AsyncClient, tiny_bundle: Path) -> None:
    schema = (await keyed.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "One of the service's API keys.",
    }
    assert schema["security"] == [{"ApiKey": []}, {"Bearer": []}]
    assert schema["paths"]["/health"]["get"]["security"] == [] and "security" not in schema["paths"]["/ner"]["post"]
    assert schema["components"]["schemas"]["NerRequest"]["properties"]["labels"]["items"]["enum"]  # the limits wrapper still runs

    async with app_client(Settings(model_path=tiny_bundle, max_text_chars=1000)) as (client, _):
        open_schema = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in open_schema["components"] and "security" not in open_schema


async def test_nothing_served_points_outside_the_service(keyed: httpx.AsyncClient) -> None:
    for path in PAGES:
        response = await keyed.get(path)
        assert response.headers["content-type"].startswith("text/html")
        assert not FETCHED_URL.search(response.text), (path, FETCHED_URL.findall(response.text))
        csp = response.headers["content-security-policy"]
        assert "connect-src 'self'" in csp and "http" not in csp
    for own in ("viewer.html", "viewer.js", "viewer.css"):
        assert not re.search(r"https?://", (STATIC_DIR / own).read_text()), own
    assert "cdn.redoc.ly" not in (STATIC_DIR / "vendor" / "redoc" / "redoc.standalone.js").read_text()  # see vendor/README.md


def test_vendored_assets_keep_their_licences() -> None:
    for folder in ("swagger-ui", "redoc"):
        assert (STATIC_DIR / "vendor" / folder / "LICENSE").is_file()
    assert "5.35.0" in (STATIC_DIR / "vendor" / "README.md").read_text()
