"""``serve --workers 2``: real processes on one port, their summed metrics, a death, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from live_server import free_port, start_server, stop_server

from service.settings import Settings
from service.workers import cores, inference_threads, per_worker

TEXTS = ["The p53 kinase binds the myc gene in cells.", "myc gene and p53", "the kinase binds", "蛋白质在 cells"] * 25


def children(pid: int) -> set[int]:
    """The supervisor's worker processes (not multiprocessing's resource tracker)."""
    found = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.add(int(child))
        except FileNotFoundError:  # exited meanwhile
            pass
    return found


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


async def post_all(url: str, texts: list[str]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=0)  # a new connection each: the kernel spreads them
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        return await asyncio.gather(*(client.post("/ner", json={"text": t}) for t in texts))


def wait_for(condition: object, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.1)
    pytest.fail("condition not met in time")


@pytest.fixture
def workers(tiny_bundle: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")  # the operator's folder, handed to the workers
    try:
        proc, url = start_server(tiny_bundle, "--workers", "2")
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
    seen: set[int] = set()

    def both_started() -> bool:
        seen.update(children(proc.pid))
        return len(children(proc.pid)) == 2

    try:
        wait_for(both_started)
        # bioner_ready: the supervisor holds it at 0 until both workers serve
        wait_for(lambda: metric(httpx.get(f"{url}/metrics", headers={"connection": "close"}).text, "bioner_ready") == 1)
        yield proc, url
    finally:
        seen.update(children(proc.pid) if proc.poll() is None else ())
        proc.kill()
        proc.wait()
        for pid in seen:  # the workers of a killed supervisor would otherwise drain on their own
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_two_workers_answer_as_one_and_their_metrics_add_up(tiny_bundle: Path, workers: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = workers
    one, one_url = start_server(tiny_bundle)
    try:
        alone = {t: httpx.post(f"{one_url}/ner", json={"text": t}).json()["entities"] for t in set(TEXTS)}
    finally:
        one.kill()
        one.wait()
    responses = asyncio.run(post_all(url, TEXTS))
    assert [r.status_code for r in responses] == [200] * len(TEXTS)
    assert [r.json()["entities"] for r in responses] == [alone[t] for t in TEXTS]
    scrapes = [httpx.get(f"{url}/metrics", headers={"connection": "close"}).text for _ in range(6)]
    # Every scrape, whichever worker answers it, sums both workers' series.
    assert {metric(s, "bioner_texts_total") for s in scrapes} == {float(len(TEXTS))}
    assert len(children(proc.pid)) == 2
    assert metric(scrapes[0], "bioner_ready") == 1
    assert re.search(r'^bioner_model_info\{[^}]*model="tiny-test"[^}]*\} 1\.0$', scrapes[0], re.M)


def test_a_killed_worker_is_replaced_and_sigterm_stops_them_all(workers: tuple[subprocess.Popen[bytes], str]) -> None:
    proc, url = workers
    first = children(proc.pid)
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(children(proc.pid)) == 2 and victim not in children(proc.pid))
    wait_for(lambda: metric(httpx.get(f"{url}/metrics", headers={"connection": "close"}).text, "bioner_ready") == 1)
    responses = asyncio.run(post_all(url, TEXTS[:20]))
    assert [r.status_code for r in responses] == [200] * 20
    last = children(proc.pid)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    for pid in last:  # no worker outlives the supervisor
        wait_for(lambda pid=pid: not Path(f"/proc/{pid}").exists() or b"zombie" in Path(f"/proc/{pid}/status").read_bytes().lower())


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_sigterm_drains_both_workers_accepted_requests(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no grace period the listener closes at SIGTERM while both workers still hold queued
    work: each finishes what it accepted. Every request with windows queued at the signal is
    answered after it with a 200; any other outcome is a refusal as shutting down or a connection
    never accepted, never a connection cut mid-request."""
    monkeypatch.setenv("BIONER_DRAIN_GRACE_S", "0")
    monkeypatch.setenv("BIONER_MAX_BATCH_SIZE", "1")  # one window a batch: the queue outlasts the signal
    monkeypatch.setenv("BIONER_MAX_QUEUE_WINDOWS", "100000")  # 40 x 60 windows may land on one worker: never "overloaded"
    proc, url = start_server(tiny_bundle, "--workers", "2")
    big = [" ".join(["p53 kinase binds the myc gene"] * 100)] * 40
    try:
        wait_for(lambda: len(children(proc.pid)) == 2)
        pids = children(proc.pid)
        before = {pid: cpu_ticks(pid) for pid in pids}

        windows = int(httpx.post(f"{url}/ner", json={"text": big[0]}, headers={"connection": "close"}).headers["x-windows"])

        async def scenario() -> tuple[list[tuple[float, httpx.Response | BaseException]], float, dict[int, int], float]:
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=0)  # a new connection each: both workers get some
            async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

                async def timed(text: str) -> tuple[float, httpx.Response | BaseException]:
                    try:
                        response: httpx.Response | BaseException = await client.post("/ner", json={"text": text})
                    except httpx.HTTPError as error:
                        response = error
                    return time.monotonic(), response

                task = asyncio.gather(*(timed(t) for t in big))
                for _ in range(1000):  # SIGTERM only once work is really queued (the scrape sums both workers)
                    queued = metric((await client.get("/metrics")).text, "bioner_queue_depth_windows")
                    if queued >= 10 * windows:
                        break
                    await asyncio.sleep(0.01)
                else:
                    pytest.fail("no window was ever seen queued")
                busy = {pid: cpu_ticks(pid) - ticks for pid, ticks in before.items()}
                signalled = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                return await task, signalled, busy, queued

        outcomes, signalled, busy, queued = asyncio.run(scenario())
        assert proc.wait(timeout=60) == 0
    finally:
        stop_server(proc)
    assert all(ticks > 0 for ticks in busy.values()), f"both workers must hold work when the signal comes: {busy}"
    answered = [(t, o) for t, o in outcomes if isinstance(o, httpx.Response)]
    ok = [t for t, o in answered if o.status_code == 200]
    refused = [o for _, o in answered if o.status_code != 200]
    assert all(o.status_code == 503 and o.json()["error"]["code"] == "shutting_down" for o in refused), [o.text for o in refused]
    assert sum(t > signalled for t in ok) >= queued // windows, "every request with windows queued at the signal is answered"
    cut = [o for _, o in outcomes if not isinstance(o, httpx.Response) and not isinstance(o, httpx.ConnectError)]
    assert not cut, cut[:3]


def test_a_bundle_that_will_not_load_stops_the_service_with_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.onnx").write_bytes(b"not a graph")
    proc = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--model-path", str(bad), "--port", str(free_port()), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "cannot start: config.json missing" in proc.stderr, proc.stderr  # the worker's own reason
    assert "could not start (status 2)" in proc.stderr


def test_inference_threads_split_the_cores_unless_set() -> None:
    assert per_worker(Settings(workers=4, inference_lanes=1), 16).intra_op_threads == 4
    assert per_worker(Settings(workers=4), 16).intra_op_threads == 3  # two lanes share a pool: 2 callers + 2 more
    assert per_worker(Settings(workers=3), 2).intra_op_threads == 1
    assert per_worker(Settings(workers=2, intra_op_threads=3), 16).intra_op_threads == 3
    assert inference_threads(Settings(inference_lanes=2), 2) == 1  # one worker of two lanes on two cores
    assert inference_threads(Settings(workers=2, inference_lanes=2), 16) == 7  # 2 lanes' threads + 6 pool threads: 8
    assert inference_threads(Settings(inference_lanes=1), 16) == 0  # one worker of one lane: ONNX Runtime's own choice
    assert inference_threads(Settings(), 2) == 1  # the default: two lanes of one thread on two cores
    assert inference_threads(Settings(inference_lanes=2, intra_op_threads=2), 2) == 2


def test_cores_are_the_cpu_set_or_the_cgroup_quota_whichever_is_smaller(tmp_path: Path) -> None:
    mine = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("max 100000\n")  # no quota
    assert cores(cpu_max) == mine
    cpu_max.write_text("50000 100000\n")  # half a core: still one thread
    assert cores(cpu_max) == 1
    cpu_max.write_text(f"{(mine + 7) * 100000} 100000\n")  # a quota above the CPU set
    assert cores(cpu_max) == mine
    assert cores(tmp_path / "absent") == mine
