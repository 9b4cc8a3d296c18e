"""Drive the service at several times its capacity and check it degrades honestly.

Starts its own server (loopback, default model, the default queue bound), measures capacity
(texts/s at concurrency 16), then for each ``--factors`` value either sends open-loop arrivals
at that multiple of capacity for ``--seconds``, or (``--closed N``) has N concurrent clients send
``factor x capacity x seconds`` requests back to back. Checks: every accepted request equals
its calm answer, refusals are 503 with Retry-After, and counts 504s (admission that knows the
deadline should leave none). Reports accepted throughput against capacity: refusing must not
cost throughput.

    python loadtest/overload.py --factors 2 4 8 --seconds 10
    python loadtest/overload.py --factors 2 4 8 --closed 256
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import drive, load_corpus, start_service  # noqa: E402
from harness import add_common_args, rss_mb, stop_service, verdict  # noqa: E402

# (status, seconds, answer equals the calm one, Retry-After, error code)
Outcome = tuple[int, float, bool, str | None, str | None]


async def send(client: httpx.AsyncClient, text: str, reference: dict[str, Any], outcomes: list[Outcome]) -> None:
    started = time.perf_counter()
    try:
        response = await client.post("/ner", json={"text": text})
    except httpx.HTTPError as exc:
        outcomes.append((-1, time.perf_counter() - started, False, None, type(exc).__name__))
        return
    latency = time.perf_counter() - started
    ok = response.status_code == 200
    try:
        code = None if ok else response.json().get("error", {}).get("code")
    except ValueError:  # uvicorn's own plain-text 503 beyond limit_concurrency
        code = "connection_limit"
    outcomes.append(
        (response.status_code, latency, ok and response.json()["entities"] == reference[text], response.headers.get("retry-after"), code)
    )


async def burst(url: str, texts: list[str], rate: float, seconds: float, reference: dict[str, Any]) -> dict[str, Any]:
    """Open loop: arrivals at ``rate``/s for ``seconds``, never waiting for answers."""
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    outcomes: list[Outcome] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:
        tasks = []
        n = int(rate * seconds)
        started = time.perf_counter()
        for i in range(n):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(client, texts[i % len(texts)], reference, outcomes)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return summarise(outcomes, elapsed)


async def closed_loop(url: str, texts: list[str], clients: int, total: int, reference: dict[str, Any]) -> dict[str, Any]:
    """Closed loop: ``clients`` concurrent clients, each sending its next request when answered."""
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    outcomes: list[Outcome] = []
    counter = iter(range(total))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            for i in counter:
                await send(client, texts[i % len(texts)], reference, outcomes)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return summarise(outcomes, elapsed)


def summarise(outcomes: list[Outcome], elapsed: float) -> dict[str, Any]:
    accepted = [o for o in outcomes if o[0] == 200]
    refused = [o for o in outcomes if o[0] == 503]
    latencies = sorted(o[1] for o in accepted)
    return {
        "sent": len(outcomes),
        "accepted": len(accepted),
        "refused_503": len(refused),
        "refused_by_code": dict(Counter(o[4] for o in refused)),
        "refused_with_retry_after": sum(o[3] is not None for o in refused),
        "deadline_504": sum(o[0] == 504 for o in outcomes),
        "failed": sum(o[0] not in (200, 503, 504) for o in outcomes),
        "accepted_wrong": sum(not o[2] for o in accepted),
        "accepted_p50_s": statistics.median(latencies) if latencies else 0.0,
        "accepted_p99_s": latencies[int(0.99 * (len(latencies) - 1))] if latencies else 0.0,
        "seconds": elapsed,
        "accepted_per_s": len(accepted) / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--factors", type=float, nargs="+", default=[5.0], help="load as multiples of measured capacity")
    parser.add_argument("--seconds", type=float, default=10.0, help="open loop: how long arrivals last")
    parser.add_argument("--closed", type=int, default=0, help="closed loop with this many concurrent clients (0: open loop)")
    parser.add_argument("--queue-windows", type=int, default=2048, help="the hard queue bound (the service's default)")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="the service's request deadline")
    args = parser.parse_args()
    texts, _ = load_corpus(args.texts, 50)
    env = {"BIONER_MAX_QUEUE_WINDOWS": str(args.queue_windows), "BIONER_REQUEST_TIMEOUT_S": str(args.timeout_s)}
    proc, url, _ = start_service(args.model, 2, env)
    try:
        reference = {t: httpx.post(f"{url}/ner", json={"text": t}, timeout=60).json()["entities"] for t in texts}
        capacity = asyncio.run(drive(url, texts, 16))["texts_per_s"]
        report: dict[str, Any] = {"capacity_texts_per_s": capacity, "deadline_s": args.timeout_s, "rss_mb": [rss_mb(proc.pid)], "runs": []}
        for factor in args.factors:
            if args.closed:
                total = int(capacity * factor * args.seconds)
                run = asyncio.run(closed_loop(url, texts, args.closed, total, reference))
            else:
                run = asyncio.run(burst(url, texts, capacity * factor, args.seconds, reference))
            run["factor"] = factor
            run["throughput_vs_capacity"] = run["accepted_per_s"] / capacity
            report["rss_mb"].append(rss_mb(proc.pid))
            after = httpx.post(f"{url}/ner", json={"text": texts[0]}, timeout=10)
            run["served_normally_after"] = after.status_code == 200 and after.json()["entities"] == reference[texts[0]]
            report["runs"].append(run)
            print(json.dumps(run))
        ok = all(
            r["failed"] == 0
            and r["accepted_wrong"] == 0
            and r["served_normally_after"]
            and r["refused_with_retry_after"] == r["refused_503"]
            for r in report["runs"]
        )
        verdict(report, ok)
    finally:
        stop_service(proc)


if __name__ == "__main__":
    main()
