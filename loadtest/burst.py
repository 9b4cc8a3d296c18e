"""Send N concurrent POST /ner requests to a running service and report what the batcher did.

Loopback only; bounded in count. Prints requests/s, latency percentiles, and the mean batch
size observed in /metrics over the burst (delta of the histogram's sum and count).

    python loadtest/burst.py --url http://127.0.0.1:8000 --requests 200 --concurrency 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
from harness import histogram

SENTENCES = [
    "IL-2 gene expression and NF-kappa B activation through CD28 requires reactive oxygen production by 5-lipoxygenase.",
    "Activation of the CD28 surface receptor provides a major costimulatory signal for T cell activation.",
    "The peri-kappa B site mediates human immunodeficiency virus type 2 enhancer activation in monocytes but not in T cells.",
    "Tyrosine phosphorylation of STAT1 and STAT3 in Jurkat cells was induced by interferon-alpha.",
]


def load_texts(path: str | None) -> list[str]:
    if path is None:
        return SENTENCES
    folder = Path(path)
    return [p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))[:500]] or SENTENCES


async def run(url: str, n: int, concurrency: int, texts: list[str]) -> None:
    if urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("burst only targets loopback")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        before = (await client.get("/metrics")).text
        gate = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        statuses: dict[int, int] = {}

        async def one(i: int) -> None:
            async with gate:
                started = time.perf_counter()
                response = await client.post("/ner", json={"text": texts[i % len(texts)]})
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - started
        after = (await client.get("/metrics")).text
    rows0, batches0 = histogram(before, "bioner_batch_size_windows")
    rows1, batches1 = histogram(after, "bioner_batch_size_windows")
    q = statistics.quantiles(latencies, n=100)
    print(f"{n} requests, concurrency {concurrency}: {n / elapsed:.1f} requests/s, statuses {statuses}")
    print(f"latency p50 {q[49] * 1000:.1f} ms, p95 {q[94] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")
    if batches1 > batches0:
        print(f"{batches1 - batches0:.0f} batches, mean {(rows1 - rows0) / (batches1 - batches0):.2f} windows per batch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--texts", default=None, help="folder of .txt files (e.g. ../shared/data/jnlpba/train)")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.requests, args.concurrency, load_texts(args.texts)))


if __name__ == "__main__":
    main()
