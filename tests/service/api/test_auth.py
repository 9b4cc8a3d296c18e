"""API keys and CORS on the real app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from service.app import create_app
from service.settings import Settings


async def client_for(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client


@pytest.fixture
async def keyed(tiny_bundle: Path, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    key_file = tmp_path / "keys"
    key_file.write_text("# lab keys\nfile-key-123\n")
    settings = Settings(
        model_path=tiny_bundle,
        max_text_chars=1000,
        api_keys=SecretStr("alpha-key, beta-key"),
        api_keys_file=key_file,
        metrics_public=False,
        log_level="debug",
    )
    async for client in client_for(settings):
        yield client


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer alpha-key"}, {"X-API-Key": "beta-key"}, {"X-API-Key": "file-key-123"}])
async def test_valid_keys_pass(keyed: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert (await keyed.post("/ner", json={"text": "p53"}, headers=headers)).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": ""}, {"Authorization": "Basic alpha-key"}, {"X-API-Key": "alpha-key, beta-key"}],
)
async def test_missing_or_wrong_keys_get_401(keyed: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for method, path in (("POST", "/ner"), ("GET", "/model"), ("GET", "/metrics")):  # pages: tests/browser
        response = await keyed.request(method, path, json={"text": "p53"} if method == "POST" else None, headers=headers)
        assert response.status_code == 401, path
        assert response.json()["error"]["code"] == "unauthorized" and response.headers["www-authenticate"]


async def test_probes_stay_open(keyed: httpx.AsyncClient) -> None:
    assert (await keyed.get("/health")).status_code == 200
    assert (await keyed.get("/ready")).status_code == 200


async def test_keys_never_reach_the_logs(keyed: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await keyed.post("/ner", json={"text": "p53"}, headers={"X-API-Key": "alpha-key"})
    await keyed.post("/ner", json={"text": "p53"}, headers={"X-API-Key": "guess-key"})
    assert "alpha-key" not in caplog.text and "guess-key" not in caplog.text
    settings = Settings(api_keys=SecretStr("alpha-key"))
    assert "alpha-key" not in repr(settings) and "alpha-key" not in str(settings.model_dump())


async def test_cors_is_off_by_default_and_configurable(tiny_bundle: Path) -> None:
    async for client in client_for(Settings(model_path=tiny_bundle, max_text_chars=1000)):
        response = await client.options("/ner", headers={"Origin": "https://lab.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in response.headers
    async for client in client_for(Settings(model_path=tiny_bundle, max_text_chars=1000, cors_origins="https://lab.example")):
        response = await client.options("/ner", headers={"Origin": "https://lab.example", "Access-Control-Request-Method": "POST"})
        assert response.headers["access-control-allow-origin"] == "https://lab.example"
