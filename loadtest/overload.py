"""Drive the service at several times its capacity and check it degrades honestly.

Starts its own server (loopback, default model, a deliberately small queue), measures capacity,
then sends an open-loop burst at ``--factor`` x capacity for ``--seconds`` (bounded). Checks:
every accepted request is answered correctly (equal to the single-request answer), the rest get
503 with Retry-After, accepted p99 stays bounded, RSS does not grow without bound, and the
service answers normally right after the burst.

    python loadtest/overload.py --factor 5 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import drive, load_corpus, start_service  # noqa: E402
from harness import add_common_args, rss_mb, stop_service, verdict  # noqa: E402


async def burst(url: str, texts: list[str], rate: float, seconds: float, reference: dict[str, Any]) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    outcomes: list[tuple[int, float, bool, str | None]] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def one(i: int) -> None:
            text = texts[i % len(texts)]
            started = time.perf_counter()
            try:
                response = await client.post("/ner", json={"text": text})
            except httpx.HTTPError as exc:
                outcomes.append((-1, time.perf_counter() - started, False, type(exc).__name__))
                return
            latency = time.perf_counter() - started
            correct = response.status_code == 200 and response.json()["entities"] == reference[text]
            outcomes.append((response.status_code, latency, correct, response.headers.get("retry-after")))

        tasks = []
        n = int(rate * seconds)
        started = time.perf_counter()
        for i in range(n):  # open loop: arrivals do not wait for answers
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    accepted = [o for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] == 503]
    latencies = sorted(o[1] for o in accepted)
    return {
        "sent": n,
        "accepted": len(accepted),
        "refused_503": len(refused),
        "refused_with_retry_after": sum(o[3] is not None for o in refused),
        "failed": len(outcomes) - len(accepted) - len(refused),
        "accepted_wrong": sum(not o[2] for o in accepted),
        "accepted_p50_s": statistics.median(latencies) if latencies else 0.0,
        "accepted_p99_s": latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--factor", type=float, default=5.0, help="arrival rate as a multiple of measured capacity")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2, help="bursts in a row (memory must not climb)")
    parser.add_argument("--queue-windows", type=int, default=64)
    args = parser.parse_args()
    texts, _ = load_corpus(args.texts, 50)
    proc, url, _ = start_service(args.model, 2, {"BIONER_MAX_QUEUE_WINDOWS": str(args.queue_windows)})
    try:
        reference = {t: httpx.post(f"{url}/ner", json={"text": t}, timeout=60).json()["entities"] for t in texts}
        capacity = asyncio.run(drive(url, texts, 16))["texts_per_s"]
        report: dict[str, Any] = {"capacity_texts_per_s": capacity, "rate": capacity * args.factor, "rss_mb": [rss_mb(proc.pid)]}
        rounds = []
        for _ in range(args.rounds):
            rounds.append(asyncio.run(burst(url, texts, capacity * args.factor, args.seconds, reference)))
            report["rss_mb"].append(rss_mb(proc.pid))
            after = httpx.post(f"{url}/ner", json={"text": texts[0]}, timeout=10)
            rounds[-1]["served_normally_after"] = after.status_code == 200 and after.json()["entities"] == reference[texts[0]]
        report["bursts"] = rounds
        verdict(
            report,
            all(
                r["failed"] == 0
                and r["accepted_wrong"] == 0
                and r["served_normally_after"]
                and r["refused_with_retry_after"] == r["refused_503"]
                for r in rounds
            ),
        )
    finally:
        stop_service(proc)


if __name__ == "__main__":
    main()
