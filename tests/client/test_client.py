"""The Python client against real server processes: chunking, retries through overload and a restart."""

from __future__ import annotations

import asyncio
import re
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from bioner_client import AsyncClient, BadRequest, Client, PayloadTooLarge, RetryPolicy, Unauthorized
from live_server import start_server, stop_server
from paths import JNLPBA_BUNDLE

TEXTS = ["The p53 kinase binds the myc gene in cells.", "myc gene and p53", "nothing here", "", "蛋白 in cells"]


def counter(url: str, pattern: str) -> float:
    found = re.search(pattern, httpx.get(f"{url}/metrics").text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def server(tiny_bundle: Path) -> Iterator[str]:
    proc, url = start_server(tiny_bundle, "--max-texts-per-request", "8", "--max-text-chars", "2000")
    yield url
    stop_server(proc)


def test_recognize_gives_typed_entities_with_exact_offsets(server: str) -> None:
    with Client(server) as ner:
        result = ner.recognize(TEXTS[0])
    assert [(e.text, e.label) for e in result.entities] == [("p53 kinase", "protein"), ("myc gene", "DNA")]
    assert all(TEXTS[0][e.start : e.end] == e.text for e in result.entities)
    assert result.model.name == "tiny-test" and len(result.request_id) == 32
    assert {e.source for e in result.entities} == {"tiny-test"}  # one head, named after the model


def test_recognize_many_chunks_1000_texts_to_the_server_limits(server: str) -> None:
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(1000)]
    before = counter(server, r'^bioner_requests_total\{method="POST",route="/ner",status="200"\} (\S+)')
    with Client(server, concurrency=4) as ner:
        alone = {t: ner.recognize(t).entities for t in set(texts[:10])}
        results = ner.recognize_many(texts)
    after = counter(server, r'^bioner_requests_total\{method="POST",route="/ner",status="200"\} (\S+)')
    assert len(results) == 1000
    assert all(results[i].entities == alone[t] for i, t in enumerate(texts[:10]))
    spans = [(t, e) for t, r in zip(texts, results) for e in r.entities]
    assert spans and all(t[e.start : e.end] == e.text for t, e in spans)
    assert after - before - 10 == 125  # 1,000 texts in chunks of the server's 8


async def test_async_client_matches_the_sync_one(server: str) -> None:
    texts = [f"{TEXTS[i % len(TEXTS)]} and p53 {i}" for i in range(100)]
    with Client(server) as ner:
        expected = ner.recognize_many(texts)
    async with AsyncClient(server, concurrency=8) as ner:
        got = await ner.recognize_many(texts)
    assert [r.entities for r in got] == [r.entities for r in expected]


def test_4xx_is_raised_at_once_with_the_request_id(server: str) -> None:
    before = counter(server, r'^bioner_requests_total\{method="POST",route="/ner",status="413"\} (\S+)')
    with Client(server, retry=RetryPolicy(attempts=5)) as ner:
        with pytest.raises(PayloadTooLarge) as too_long:
            ner.recognize("p53 " * 1000)
        with pytest.raises(BadRequest):
            ner.recognize("p53", labels=["not-a-type"])
    assert too_long.value.code == "text_too_long" and too_long.value.request_id and too_long.value.status == 413
    after = counter(server, r'^bioner_requests_total\{method="POST",route="/ner",status="413"\} (\S+)')
    assert after - before == 1  # sent once: a 4xx is never retried


def test_api_key(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("lab-key\n")
    proc, url = start_server(tiny_bundle, "--api-keys-file", str(tmp_path / "keys"))
    try:
        with Client(url, api_key="lab-key") as ner:
            assert ner.recognize("p53").entities[0].label == "protein"
        with Client(url, api_key="wrong") as ner, pytest.raises(Unauthorized):
            ner.recognize("p53")
    finally:
        stop_server(proc)


@pytest.mark.skipif(not (JNLPBA_BUNDLE / "model.onnx").exists(), reason="default model not present")
async def test_overload_503_then_success() -> None:
    """Real model, a queue of 2 windows: most of 24 concurrent requests are refused at first,
    and every one succeeds after honouring Retry-After."""
    # A 500 ms batch wait: the first two windows sit in the queue, so the other requests meet a full
    # queue however fast or slow (a busy CI machine) the server is.
    server_flags = ["--max-queue-windows", "2", "--max-text-chars", "100", "--retry-after-s", "1", "--max-wait-ms", "500"]
    proc, url = start_server(JNLPBA_BUNDLE, *server_flags)
    texts = [f"IL-{i} activates NF-kappa B in T cells." for i in range(24)]
    try:
        async with AsyncClient(url, retry=RetryPolicy(attempts=20, max_backoff_s=2)) as ner:
            alone = [(await ner.recognize(t)).entities for t in texts[:3]]
            results = await asyncio.gather(*(ner.recognize(t) for t in texts))
        # Either 503 counts: a full queue (overloaded) or, on a slow or busy machine, admission's
        # estimate that the queue cannot finish in time (deadline_unmeetable); both carry Retry-After.
        refused = sum(
            counter(url, rf'^bioner_requests_refused_total\{{reason="{reason}"\}} (\S+)')
            for reason in ("overloaded", "deadline_unmeetable")
        )
        refusals = [line for line in httpx.get(f"{url}/metrics").text.splitlines() if line.startswith("bioner_requests_refused_total")]
    finally:
        stop_server(proc)
    assert refused > 0, f"the test never overloaded the server: {refusals}"
    assert [r.entities for r in results[:3]] == alone


def test_server_restart_mid_run(tiny_bundle: Path) -> None:
    """SIGTERM mid-run (503 while draining, then refused connections), a new server on the same
    port: every text is answered, in order, as the first server answered it."""
    proc, url = start_server(tiny_bundle, "--max-texts-per-request", "1", "--drain-grace-s", "0.5")
    port = int(url.rsplit(":", 1)[1])
    texts = [f"{TEXTS[i % 3]} {i}" for i in range(400)]
    results: list[object] = []
    with Client(url) as ner:
        expected = [ner.recognize(t).entities for t in texts[:3]]

    def run() -> None:
        with Client(url, concurrency=2, retry=RetryPolicy(attempts=40, backoff_s=0.1, max_backoff_s=0.5)) as ner:
            results.extend(ner.recognize_many(texts))

    worker = threading.Thread(target=run)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while counter(url, r'^bioner_requests_total\{method="POST",route="/ner",status="200"\} (\S+)') < 50:
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        proc, _ = start_server(tiny_bundle, "--max-texts-per-request", "1", port=port)
        worker.join(timeout=60)
        served_by_second = counter(url, r'^bioner_requests_total\{method="POST",route="/ner",status="200"\} (\S+)')
    finally:
        stop_server(proc)
    assert not worker.is_alive() and len(results) == len(texts)
    assert served_by_second > 0, "the run finished before the restart"
    assert [r.entities for r in results[:3]] == expected  # type: ignore[attr-defined]
    spans = [(t, e) for t, r in zip(texts, results) for e in r.entities]  # type: ignore[attr-defined]
    assert spans and all(t[e.start : e.end] == e.text for t, e in spans)


def test_retry_after_is_never_shortened() -> None:
    policy = RetryPolicy(max_backoff_s=2)
    waits = [policy.delay(1, 30.0) for _ in range(200)]
    assert min(waits) >= 30.0 and max(waits) <= 30.0 * 1.2  # the server's word, spread only later
    assert max(policy.delay(8, None) for _ in range(200)) <= 2 * 1.2  # without it: capped backoff


def test_alternatives_reach_the_typed_entities(server: str) -> None:
    with Client(server) as ner:
        [protein, dna] = ner.recognize(TEXTS[0], alternatives=1).entities
    assert [a.label for a in protein.alternatives] == ["DNA"] and [a.label for a in dna.alternatives] == ["protein"]
    assert 0 <= protein.alternatives[0].score < protein.score
