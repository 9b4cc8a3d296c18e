"""One request cannot hurt the others: bounded cost before any work, failures that stay contained."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from in_process import app_client

from service.batching import BatchStats
from service.settings import Settings


async def _client(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    async with app_client(settings) as pair:
        yield pair


@pytest.fixture
async def client(tiny_bundle: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c, _ in _client(Settings(model_path=tiny_bundle, max_text_chars=1000, max_texts_per_request=8)):
        yield c


def metric(text: str, line: str) -> bool:
    return any(row.startswith(line) for row in text.splitlines())


@pytest.mark.parametrize(
    "payload", [b'{"text": "\\ud800"}', b'{"texts": ["fine", "p53 \\udfff here"]}', b'{"text": "p53", "labels": ["\\udbff"]}']
)
async def test_lone_surrogates_are_422_with_request_id(client: httpx.AsyncClient, payload: bytes) -> None:
    response = await client.post("/ner", content=payload, headers={"content-type": "application/json", "x-request-id": "sur-1"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "unicode" in error["message"] and error["request_id"] == "sur-1"
    assert response.headers["x-request-id"] == "sur-1"


async def test_huge_lists_stop_at_the_first_excess_with_a_short_body(client: httpx.AsyncClient) -> None:
    body = b'{"texts": [' + b",".join([b"1"] * 50_000) + b"]}"  # inside the body limit, far over the item limit
    response = await client.post("/ner", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert len(response.content) < 400, response.content  # names the problem, never echoes the input
    assert "at most 8 items" in response.json()["error"]["message"]
    labels = await client.post("/ner", json={"text": "p53", "labels": ["protein"] * 1000})
    assert labels.status_code == 422 and len(labels.content) < 400


async def test_many_bad_items_are_summarised(client: httpx.AsyncClient) -> None:
    response = await client.post("/ner", json={"texts": [1, 2, 3, 4, 5, 6]})
    message = response.json()["error"]["message"]
    assert response.status_code == 422 and message.count("Input should be a valid string") == 3 and "and 3 more" in message


async def test_unhandled_error_is_500_with_request_id_and_counted(tiny_bundle: Path) -> None:
    async for client, app in _client(Settings(model_path=tiny_bundle, max_text_chars=1000)):

        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals")

        app.state.engine.recognize = broken  # type: ignore[attr-defined]
        response = await client.post("/ner", json={"text": "p53"}, headers={"x-request-id": "boom-7"})
        assert response.status_code == 500 and "secret" not in response.text
        assert response.json()["error"] == {
            "code": "internal_error",
            "message": "internal error; see server log for request boom-7",
            "request_id": "boom-7",
        }
        metrics = (await client.get("/metrics")).text
        assert metric(metrics, 'bioner_requests_total{method="POST",route="/ner",status="500"} 1.0')
        assert metric(metrics, 'bioner_requests_refused_total{reason="internal_error"} 1.0')


async def test_chunked_body_over_the_limit_is_413_and_counted(client: httpx.AsyncClient) -> None:
    async def chunks(*parts: bytes, repeat: int = 1) -> AsyncIterator[bytes]:
        for _ in range(repeat):
            for part in parts:
                yield part

    body = chunks(b"x" * 65_536, repeat=200)  # no Content-Length: the limit is found while reading
    response = await client.post("/ner", content=body, headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"
    small = await client.post("/ner", content=chunks(b'{"text": ', b'"p53"}'), headers={"content-type": "application/json"})
    assert small.status_code == 200 and small.json()["entities"][0]["text"] == "p53"  # chunked but within the limit
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, 'bioner_requests_refused_total{reason="body_too_large"} 1.0')
    assert metric(metrics, 'bioner_requests_total{method="POST",route="/ner",status="413"} 1.0')


async def test_request_ids_and_methods_are_bounded(client: httpx.AsyncClient) -> None:
    for bad in ("a" * 129, "has space", "semi;colon", ""):
        response = await client.get("/health", headers={"x-request-id": bad})
        assert response.headers["x-request-id"] != bad and len(response.headers["x-request-id"]) == 32
    assert (await client.get("/health", headers={"x-request-id": "a" * 128})).headers["x-request-id"] == "a" * 128
    await client.request("BREW", "/ner")
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, 'bioner_requests_total{method="other",route="/ner",status="405"}')


async def test_dead_worker_fails_pending_and_turns_unready(tiny_bundle: Path) -> None:
    async for client, app in _client(Settings(model_path=tiny_bundle, max_text_chars=1000, max_batch_size=1)):
        batcher = app.state.engine.batcher  # type: ignore[attr-defined]

        def broken_hook(stats: BatchStats) -> None:
            raise RuntimeError("hook bug")

        batcher._hooks.on_batch = broken_hook
        responses = await asyncio.gather(*(client.post("/ner", json={"text": t}) for t in ("p53", "myc", "p53 kinase")))
        statuses = sorted(r.status_code for r in responses)
        assert statuses[0] == 200 and set(statuses[1:]) <= {200, 500, 503}  # nobody hangs
        ready = await client.get("/ready")
        assert ready.status_code == 503 and "hook bug" in ready.json()["reason"]
        alive = await client.get("/health")  # only a restart cures a dead worker: liveness says so
        assert alive.status_code == 503 and "hook bug" in alive.json()["reason"]
        late = await client.post("/ner", json={"text": "p53"})
        assert late.status_code == 503 and late.headers["retry-after"]


async def test_hung_inference_gives_504_and_unready(tiny_bundle: Path) -> None:
    settings = Settings(model_path=tiny_bundle, max_text_chars=1000, request_timeout_s=0.3, stall_s=0.2)
    async for client, app in _client(settings):
        session = app.state.engine.session  # type: ignore[attr-defined]
        release = threading.Event()
        real_run = session.run

        def hang(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
            release.wait(10)
            return real_run(ids, mask)

        session.run = hang
        response = await client.post("/ner", json={"text": "p53"})
        assert response.status_code == 504 and response.json()["error"]["code"] == "deadline_exceeded"
        ready = await client.get("/ready")
        assert ready.status_code == 503 and "running for over" in ready.json()["reason"]
        assert (await client.get("/health")).status_code == 200  # alive, just not ready
        release.set()
        session.run = real_run

        async def until_ready() -> None:
            while (await client.get("/ready")).status_code != 200:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(until_ready(), 10)  # the released batch finished: ready again (the bound only stops a hang)
        assert (await client.post("/ner", json={"text": "p53"})).status_code == 200


async def test_own_timeout_has_a_floor(client: httpx.AsyncClient) -> None:
    assert (await client.post("/ner", json={"text": "p53", "timeout": 0.05})).status_code == 422
    assert (await client.post("/ner", json={"text": "p53", "timeout": 31})).status_code == 422  # over the server's deadline
    assert (await client.post("/ner", json={"text": "p53", "timeout": 2})).status_code == 200


async def test_integral_floats_are_integers_as_json_schema_says(client: httpx.AsyncClient) -> None:
    assert (await client.post("/ner", json={"text": "p53", "alternatives": 1.0})).status_code == 200
    assert (await client.post("/ner", json={"text": "p53", "alternatives": 1.5})).status_code == 422
