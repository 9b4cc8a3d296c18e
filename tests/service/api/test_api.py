"""The real app under its lifespan, over httpx's ASGI transport (no server process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from in_process import app_client
from tiny_bundle import SPECIALS, TOKENS

from service.settings import Settings

TEXT = "The p53 kinase binds the myc gene in cells."
P53_ID = (SPECIALS + list(TOKENS)).index("p53")


async def _client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    async with app_client(settings) as pair:
        yield pair


@pytest.fixture
async def client(tiny_bundle: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(model_path=tiny_bundle, max_texts_per_request=4, max_text_chars=500, max_wait_ms=1)
    async for c, _ in _client(settings):
        yield c


async def test_single_text(client: httpx.AsyncClient) -> None:
    response = await client.post("/ner", json={"text": TEXT}, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    body = response.json()
    assert [(e["text"], e["label"]) for e in body["entities"]] == [("p53 kinase", "protein"), ("myc gene", "DNA")]
    assert all(TEXT[e["start"] : e["end"]] == e["text"] for e in body["entities"])
    assert body["model"]["name"] == "tiny-test" and len(body["model"]["sha256"]) == 64
    assert response.headers["x-request-id"] == "abc-123"
    for header in ("x-queue-time", "x-inference-time", "x-total-time", "x-tokens"):
        assert float(response.headers[header]) >= 0


async def test_batch_keeps_order(client: httpx.AsyncClient) -> None:
    texts = ["myc gene", "", "the p53", "nothing here"]
    response = await client.post("/ner", json={"texts": texts})
    assert response.status_code == 200
    assert [[e["text"] for e in ents] for ents in response.json()["entities"]] == [["myc gene"], [], ["p53"], []]
    assert len(response.headers["x-request-id"]) == 32  # generated when not sent


async def test_filters(client: httpx.AsyncClient) -> None:
    response = await client.post("/ner", json={"text": TEXT, "labels": ["DNA"], "aggregation_strategy": "max"})
    assert [e["label"] for e in response.json()["entities"]] == ["DNA"]
    response = await client.post("/ner", json={"text": TEXT, "min_score": 0.99})
    assert response.json()["entities"] == []


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"{not json", 400, "malformed_json"),
        ({"text": 5}, 422, "invalid_request"),
        ({"texts": []}, 422, "invalid_request"),
        ({}, 422, "invalid_request"),
        ({"text": "a", "texts": ["b"]}, 422, "invalid_request"),
        ({"texts": ["a"] * 5}, 422, "invalid_request"),
        ({"text": "x" * 501}, 413, "text_too_long"),
        ({"text": "a", "aggregation_strategy": "simple"}, 422, "invalid_request"),
        ({"text": "a", "labels": ["gene"]}, 422, "invalid_request"),
        ({"text": "a", "decoding": "crf"}, 422, "invalid_request"),  # this model has no CRF head
        ({"text": "a", "decoding": "beam"}, 422, "invalid_request"),
        ({"text": "a", "min_score": 2}, 422, "invalid_request"),
        ({"text": "a", "surprise": 1}, 422, "invalid_request"),
        ([1, 2], 422, "invalid_request"),
    ],
)
async def test_bad_input_is_a_clear_4xx(client: httpx.AsyncClient, payload: object, status: int, code: str) -> None:
    if isinstance(payload, bytes):
        response = await client.post("/ner", content=payload, headers={"content-type": "application/json"})
    else:
        response = await client.post("/ner", json=payload)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["request_id"]


async def test_body_over_limit_is_refused_before_parsing(client: httpx.AsyncClient) -> None:
    response = await client.post("/ner", content=b"x" * 3_000_000, headers={"content-type": "application/json"})
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


async def test_whitespace_text(client: httpx.AsyncClient) -> None:
    response = await client.post("/ner", json={"text": "   \n"})
    assert response.status_code == 200 and response.json()["entities"] == []


async def test_probes_and_model_info(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    assert (await client.get("/ready")).status_code == 200
    info = (await client.get("/model")).json()
    assert info["labels"] == ["protein", "DNA"] and info["max_length"] == 16 and info["provider"] == "CPUExecutionProvider"
    assert (await client.get("/docs")).status_code == 200
    schema = (await client.get("/openapi.json")).json()
    assert "/ner" in schema["paths"]


async def test_metrics_move(client: httpx.AsyncClient) -> None:
    await asyncio.gather(*(client.post("/ner", json={"text": TEXT}) for _ in range(20)))
    await client.post("/ner", json={"text": "x" * 600})
    text = (await client.get("/metrics")).text
    assert 'bioner_requests_total{method="POST",route="/ner",status="200"} 20.0' in text
    assert 'bioner_requests_refused_total{reason="text_too_long"} 1.0' in text
    assert 'bioner_entities_total{label="protein",model="tiny-test"} 20.0' in text
    assert "bioner_batch_size_windows_count" in text and "bioner_inference_duration_seconds_bucket" in text
    assert "bioner_model_info{" in text and "bioner_queue_depth_windows" in text
    # every answered request was decoded once, alone or together with others
    assert 'bioner_decode_batch_requests_sum{model="tiny-test"} 20.0' in text and "bioner_decode_duration_seconds_count" in text


async def test_overload_gives_503_with_retry_after(tiny_bundle: Path) -> None:
    settings = Settings(model_path=tiny_bundle, max_queue_windows=10, max_text_chars=100, max_batch_size=1, retry_after_s=3)
    async for client, _ in _client(settings):
        long_text = " ".join(["p53"] * 25)  # 3 windows of 14 tokens: three requests fit, four do not
        responses = await asyncio.gather(*(client.post("/ner", json={"text": long_text}) for _ in range(20)))
        statuses = [r.status_code for r in responses]
        assert set(statuses) == {200, 503}, statuses
        assert all(r.headers["retry-after"] == "3" for r in responses if r.status_code == 503)
        assert (await client.post("/ner", json={"text": "p53"})).status_code == 200


async def test_request_bigger_than_the_queue_is_413_not_503(tiny_bundle: Path) -> None:
    settings = Settings(model_path=tiny_bundle, max_queue_windows=5, max_text_chars=40)
    async for client, app in _client(settings):
        encoder = app.state.engine.bundle.encoder  # type: ignore[attr-defined]
        calls: list[int] = []
        real_encode = encoder.encode_batch
        encoder.encode_batch = lambda texts: calls.append(len(texts)) or real_encode(texts)
        # Each text alone fits (40 characters bound 4 windows); four together may need 16 > 5.
        response = await client.post("/ner", json={"texts": ["p53 " * 10] * 4})
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
        assert "retry-after" not in response.headers
        assert calls == []  # refused from its character count, before any tokenising
        assert (await client.post("/ner", json={"text": "p53 " * 10})).status_code == 200
        assert calls == [1]


async def test_failed_batch_fails_only_its_request(tiny_bundle: Path) -> None:
    settings = Settings(model_path=tiny_bundle, max_text_chars=1000, max_batch_size=1)
    async for client, app in _client(settings):
        session = app.state.engine.session  # type: ignore[attr-defined]
        real_run = session.run

        def flaky(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            if (ids == P53_ID).any():
                raise RuntimeError("injected engine failure")
            return real_run(ids, mask)

        session.run = flaky
        bad, good = await asyncio.gather(client.post("/ner", json={"text": "p53"}), client.post("/ner", json={"text": "myc"}))
        assert bad.status_code == 500 and bad.json()["error"]["code"] == "inference_failed"
        assert "injected" not in bad.text and bad.json()["error"]["request_id"] in bad.text
        assert good.status_code == 200 and good.json()["entities"][0]["text"] == "myc"
        assert (await client.get("/ready")).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert 'bioner_windows_dropped_total{model="tiny-test",reason="inference_error"} 1.0' in metrics
