"""Clients that give up: send N requests and hang up without reading the answer, then check that
nothing leaked: queue empty, RSS and open file descriptors back to where they were, and the
service still answers. Loopback only.

    python loadtest/disconnects.py --requests 10000 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import load_corpus, start_service  # noqa: E402
from harness import add_common_args, metric, open_fds, rss_mb, series, stop_service, verdict  # noqa: E402


async def hang_up(port: int, body: bytes, linger_s: float) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /ner HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    await asyncio.sleep(linger_s)  # long enough for the request to be queued, not answered
    writer.close()
    await writer.wait_closed()


async def run(port: int, bodies: list[bytes], n: int, concurrency: int, linger_s: float) -> None:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await hang_up(port, bodies[i % len(bodies)], linger_s)

    await asyncio.gather(*(one(i) for i in range(n)))


def settle(url: str, limit_s: float = 120) -> float:
    """Seconds until the queue is empty (the server has seen every hang-up)."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        try:
            if metric(httpx.get(f"{url}/metrics", timeout=30).text, series("bioner_queue_depth_windows")) == 0:
                break
        except httpx.TimeoutException:
            pass  # still busy with the backlog
        time.sleep(0.2)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--linger", type=float, default=0.02, help="seconds between sending and hanging up")
    args = parser.parse_args()
    texts, _ = load_corpus(args.texts, 50)
    bodies = [json.dumps({"text": t}).encode() for t in texts]
    proc, url, _ = start_service(args.model, 2, {})
    port = int(url.rsplit(":", 1)[1])
    try:
        for t in texts[:5]:
            httpx.post(f"{url}/ner", json={"text": t}, timeout=60)
        asyncio.run(run(port, bodies, 500, args.concurrency, args.linger))  # warm-up: allocator pools fill once
        settle(url)
        before = {"rss_mb": rss_mb(proc.pid), "open_fds": open_fds(proc.pid)}
        started = time.perf_counter()
        asyncio.run(run(port, bodies, args.requests, args.concurrency, args.linger))
        elapsed = time.perf_counter() - started
        waited = settle(url)  # the server works through its backlog of hung-up requests
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        after = {"rss_mb": rss_mb(proc.pid), "open_fds": open_fds(proc.pid)}
        answer = httpx.post(f"{url}/ner", json={"text": texts[0]}, timeout=60)
        report = {
            "requests_abandoned": args.requests,
            "seconds": round(elapsed, 1),
            "settled_after_s": round(waited, 1),
            "before": before,
            "after": after,
            "queue_depth_after": metric(metrics, series("bioner_queue_depth_windows")),
            "windows_dropped_cancelled": metric(metrics, series("bioner_windows_dropped_total", reason="cancelled")),
            "requests_seen_as_disconnected": metric(metrics, series("bioner_requests_refused_total", reason="client_closed_request")),
            "windows_run": metric(metrics, series("bioner_windows_total")),
            "serves_after": answer.status_code == 200,
        }
        verdict(
            report,
            report["queue_depth_after"] == 0
            and report["serves_after"]
            and after["open_fds"] <= before["open_fds"] + 2
            and after["rss_mb"] <= before["rss_mb"] * 1.1,
        )
    finally:
        stop_service(proc)


if __name__ == "__main__":
    main()
