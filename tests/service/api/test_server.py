"""One real server process: the console entry point, uvicorn, sockets, SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import start_server
from tiny_bundle import write_bundle

TEXTS = ["The p53 kinase binds the myc gene in cells.", "myc gene and p53", "蛋白质在 cells", "the kinase binds"] * 50


@pytest.fixture
def server(tiny_bundle: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc, url = start_server(tiny_bundle, "--max-wait-ms", "5", "--max-batch-size", "16")
    yield proc, url
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def post_all(url: str, texts: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.post("/ner", json={"text": t}) for t in texts))


async def post_all_outcomes(url: str, texts: list[str]) -> list[httpx.Response | BaseException]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.post("/ner", json={"text": t}) for t in texts), return_exceptions=True)


def test_concurrent_requests_form_batches_and_get_their_own_answers(server: tuple[subprocess.Popen[bytes], str]) -> None:
    _, url = server
    alone = {t: httpx.post(f"{url}/ner", json={"text": t}).json()["entities"] for t in set(TEXTS)}
    responses = asyncio.run(post_all(url, TEXTS))
    assert all(r.status_code == 200 for r in responses)
    for text, response in zip(TEXTS, responses):
        assert response.json()["entities"] == alone[text]
    metrics = httpx.get(f"{url}/metrics").text
    count = float(re.search(r"^bioner_batch_size_windows_count\{model=\"tiny-test\"\} (\S+)", metrics, re.M).group(1))  # type: ignore[union-attr]
    total = float(re.search(r"^bioner_batch_size_windows_sum\{model=\"tiny-test\"\} (\S+)", metrics, re.M).group(1))  # type: ignore[union-attr]
    assert total == len(TEXTS) + len(alone) and total / count > 1.5  # batches really formed


def test_sigterm_drains_accepted_requests_then_exits_zero(server: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = server

    big = [" ".join(["p53 kinase binds the myc gene"] * 40)] * 60  # enough work to be mid-flight

    async def scenario() -> list[httpx.Response | BaseException]:
        task = asyncio.ensure_future(post_all_outcomes(url, big))
        async with httpx.AsyncClient(base_url=url) as probe:  # SIGTERM only once work is really queued
            for _ in range(1000):
                metrics = (await probe.get("/metrics")).text
                if float(re.search(r"^bioner_queue_depth_windows\{model=\"tiny-test\"\} (\S+)", metrics, re.M).group(1)) > 0:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.01)
            else:  # not a silent fall-through: a SIGTERM before anything queued tests nothing
                pytest.fail("no window was ever seen queued")
        proc.send_signal(signal.SIGTERM)
        return await task

    outcomes = asyncio.run(scenario())
    assert proc.wait(timeout=30) == 0
    answered = [o for o in outcomes if isinstance(o, httpx.Response)]
    # Everything the server accepted is answered in full; only connections it never accepted fail.
    assert answered and all(r.status_code in (200, 503) for r in answered)
    assert sum(r.status_code == 200 for r in answered) > 0
    assert all(isinstance(o, httpx.ConnectError) for o in outcomes if not isinstance(o, httpx.Response))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "nope", "model bundle folder not found"),
        (lambda p: write_bundle(p / "narrow", labels=["O", "B-protein", "I-protein"]), "5 logits per token but config.json has 3 labels"),
        (lambda p: _without(write_bundle(p / "notok"), "tokenizer.json"), "tokenizer.json missing"),
        (lambda p: _corrupt(write_bundle(p / "corrupt")), "model.onnx cannot be loaded"),
    ],
)
def test_bad_bundle_fails_fast_with_one_line(tmp_path: Path, make: object, message: str) -> None:
    folder = make(tmp_path)  # type: ignore[operator]
    result = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--model-path", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr, result.stderr


def _without(folder: Path, name: str) -> Path:
    (folder / name).unlink()
    return folder


def _corrupt(folder: Path) -> Path:
    (folder / "model.onnx").write_bytes(b"\x00garbage")
    return folder


def test_client_that_gives_up_has_its_queued_windows_dropped(tiny_bundle: Path) -> None:
    proc, url = start_server(tiny_bundle, "--max-batch-size", "1", "--max-queue-windows", "100000", "--max-text-chars", "100000")

    def queue_depth(metrics: str) -> float:
        return float(re.search(r"^bioner_queue_depth_windows\{model=\"tiny-test\"\} (\S+)", metrics, re.M).group(1))  # type: ignore[union-attr]

    async def hang_up_once_queued() -> None:
        """Send a long text; hang up only once its windows are seen in the queue (no race with tokenising)."""
        text = " ".join(["p53 kinase binds the myc gene"] * 3000)  # thousands of 16-token windows
        async with httpx.AsyncClient(base_url=url, timeout=60) as client, httpx.AsyncClient(base_url=url) as probe:
            request = asyncio.create_task(client.post("/ner", json={"text": text}))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and queue_depth((await probe.get("/metrics")).text) == 0:
                assert not request.done(), "the request finished before its windows were seen queued"
                await asyncio.sleep(0.01)
            request.cancel()  # closes the connection: the client is gone
            with pytest.raises(asyncio.CancelledError):
                await request

    try:
        asyncio.run(hang_up_once_queued())
        deadline = time.monotonic() + 20
        dropped = 0.0
        while time.monotonic() < deadline:
            metrics = httpx.get(f"{url}/metrics").text
            found = re.search(r'^bioner_windows_dropped_total\{model="tiny-test",reason="cancelled"\} (\S+)', metrics, re.M)
            dropped = float(found.group(1)) if found else 0.0
            refused = 'bioner_requests_refused_total{reason="client_closed_request"} 1.0' in metrics
            if dropped > 0 and queue_depth(metrics) == 0 and refused:  # the drop and the refusal, in either order
                break
            time.sleep(0.1)
        assert dropped > 0
        assert 'bioner_requests_refused_total{reason="client_closed_request"} 1.0' in metrics
        assert queue_depth(metrics) == 0
        assert httpx.post(f"{url}/ner", json={"text": "p53"}).status_code == 200  # and it still serves
    finally:
        proc.kill()
        proc.wait()


def test_sigterm_turns_unready_before_the_listener_closes(tiny_bundle: Path) -> None:
    proc, url = start_server(
        tiny_bundle,
        *("--max-batch-size", "1", "--max-queue-windows", "100000", "--max-text-chars", "100000", "--drain-grace-s", "1.5"),
        *("--inference-lanes", "1"),  # one batch at a time: the first request must not drain before the second queues (seen once in CI)
    )
    big = " ".join(["p53 kinase binds the myc gene"] * 3000)  # about 1,800 windows of 16 tokens

    async def scenario() -> tuple[list[httpx.Response | BaseException], httpx.Response, httpx.Response, float]:
        task = asyncio.ensure_future(post_all_outcomes(url, [big, big]))
        async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
            for _ in range(1000):
                metrics = (await probe.get("/metrics")).text
                if float(re.search(r"^bioner_queue_depth_windows\{model=\"tiny-test\"\} (\S+)", metrics, re.M).group(1)) > 3000:  # type: ignore[union-attr]  # both queued
                    break
                await asyncio.sleep(0.01)
            else:  # not a silent fall-through: the drain must be tested with both requests accepted
                pytest.fail("the two requests were never seen queued together")
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            for _ in range(500):  # the signal is seen on the server's next tick; the listener stays open for the grace
                ready = await probe.get("/ready")  # a load balancer sees 503 while connections are still accepted
                if ready.status_code != 200:
                    break
                await asyncio.sleep(0.01)
            refused = await probe.post("/ner", json={"text": "p53"})
        return await task, ready, refused, signalled

    try:
        outcomes, ready, refused, signalled = asyncio.run(scenario())
        assert ready.status_code == 503 and ready.json()["reason"] == "draining"
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "shutting_down" and refused.headers["retry-after"]
        assert [o.status_code for o in outcomes if isinstance(o, httpx.Response)] == [200, 200]  # queued work finished
        assert proc.wait(timeout=30) == 0
        assert time.monotonic() - signalled < 25  # inside a Kubernetes default grace period of 30 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_metrics_on_their_own_port_while_the_api_needs_a_key(tiny_bundle: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        metrics_port = s.getsockname()[1]
    key_file = tmp_path / "keys"
    key_file.write_text("lab-key\n")
    proc, url = start_server(tiny_bundle, "--api-keys-file", str(key_file), "--metrics-port", str(metrics_port))
    try:
        assert httpx.get(f"{url}/metrics").status_code == 401  # behind the key on the API port
        assert httpx.get(f"{url}/metrics", headers={"x-api-key": "lab-key"}).status_code == 200
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert scraped.status_code == 200 and "bioner_ready 1.0" in scraped.text
    finally:
        proc.kill()
        proc.wait()


def test_empty_key_file_refuses_to_start_with_one_line(tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "keys").write_text("\n# to be filled\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "service",
            "serve",
            "--model-path",
            str(tiny_bundle),
            "--max-text-chars",
            "1000",
            "--api-keys-file",
            str(tmp_path / "keys"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0
    assert "none was found" in result.stderr, result.stderr
