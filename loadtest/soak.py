"""Soak: moderate closed-loop load for a fixed time; RSS, open file descriptors and latency sampled.

python loadtest/soak.py --minutes 10 --concurrency 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import load_corpus, start_service  # noqa: E402
from harness import add_common_args, open_fds, rss_mb, stop_service  # noqa: E402


async def soak(url: str, pid: int, texts: list[str], minutes: float, concurrency: int, every_s: float) -> list[dict[str, float]]:
    samples: list[dict[str, float]] = []
    latencies: list[float] = []
    failures = 0
    stop = time.monotonic() + minutes * 60
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:

        async def worker(k: int) -> None:
            nonlocal failures
            i = k
            while time.monotonic() < stop:
                started = time.perf_counter()
                response = await client.post("/ner", json={"text": texts[i % len(texts)]})
                latencies.append(time.perf_counter() - started)
                failures += response.status_code != 200
                i += concurrency

        async def sampler() -> None:
            started = time.monotonic()
            while time.monotonic() < stop:
                await asyncio.sleep(every_s)
                window = latencies[:]
                latencies.clear()
                samples.append(
                    {
                        "t_s": round(time.monotonic() - started),
                        "requests": len(window),
                        "failures": failures,
                        "p50_ms": 1000 * statistics.median(window) if window else 0.0,
                        "p99_ms": 1000 * sorted(window)[int(0.99 * (len(window) - 1))] if window else 0.0,
                        "rss_mb": rss_mb(pid),
                        "open_fds": open_fds(pid),
                    }
                )
                print(json.dumps(samples[-1]), flush=True)

        await asyncio.gather(sampler(), *(worker(k) for k in range(concurrency)))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--every", type=float, default=30, help="seconds between samples")
    args = parser.parse_args()
    texts, _ = load_corpus(args.texts, 200)
    proc, url, _ = start_service(args.model, 2, {})
    try:
        samples = asyncio.run(soak(url, proc.pid, texts, args.minutes, args.concurrency, args.every))
    finally:
        stop_service(proc)
    first, last = samples[0], samples[-1]
    print(
        f"requests {sum(s['requests'] for s in samples)}, failures {last['failures']}; "
        f"RSS {first['rss_mb']:.1f} -> {last['rss_mb']:.1f} MB; fds {first['open_fds']} -> {last['open_fds']}; "
        f"p50 {first['p50_ms']:.0f} -> {last['p50_ms']:.0f} ms; p99 {first['p99_ms']:.0f} -> {last['p99_ms']:.0f} ms"
    )


if __name__ == "__main__":
    main()
