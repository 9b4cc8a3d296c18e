"""One maximal request must not stall everyone: short-request and /health latency while big ones run.

Starts its own server (loopback, the default model unless --model), then:
1. calm: short sentences one after another, and /health, with nothing else running;
2. loaded: ``--big-clients`` clients each send maximal texts (``max_text_chars`` characters of
   abstracts) back to back for ``--seconds``, while one client sends the same short sentences and
   a prober asks /health every 50 ms.
Reports short-request p50/p99 calm and loaded, the mean inference batch time (from /metrics),
/health p50/p99/max, and how many maximal requests finished. Verdict: loaded short p50 within two
batch times of calm, /health max under 100 ms, every maximal request answered 200.

    python loadtest/fairness.py --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import load_corpus, percentiles, start_service  # noqa: E402
from harness import add_common_args, histogram, stop_service, verdict  # noqa: E402

SHORT = [
    "IL-2 gene expression requires NF-kappa B in human T cells.",
    "STAT1 was phosphorylated in U937 cells.",
    "The c-myc promoter binds E2F in HeLa cells.",
]


def maximal_text(texts: list[str], chars: int) -> str:
    out, size = [], 0
    while size < chars:
        for text in texts:
            out.append(text)
            size += len(text) + 1
            if size >= chars:
                break
    return " ".join(out)[:chars]


async def shorts(client: httpx.AsyncClient, until: float, gap_s: float) -> list[float]:
    latencies = []
    i = 0
    while time.perf_counter() < until:
        started = time.perf_counter()
        response = await client.post("/ner", json={"text": SHORT[i % len(SHORT)]})
        response.raise_for_status()
        latencies.append(time.perf_counter() - started)
        i += 1
        await asyncio.sleep(gap_s)
    return latencies


async def probes(client: httpx.AsyncClient, until: float) -> list[float]:
    latencies = []
    while time.perf_counter() < until:
        started = time.perf_counter()
        (await client.get("/health")).raise_for_status()
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    return latencies


async def bigs(client: httpx.AsyncClient, text: str, until: float) -> list[tuple[int, float]]:
    outcomes = []
    while time.perf_counter() < until:
        started = time.perf_counter()
        response = await client.post("/ner", json={"text": text}, timeout=300)
        outcomes.append((response.status_code, time.perf_counter() - started))
    return outcomes


async def scenario(url: str, big_text: str, big_clients: int, seconds: float, gap_s: float) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=big_clients + 4)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        for text in SHORT:
            await client.post("/ner", json={"text": text})  # warm
        calm_until = time.perf_counter() + min(seconds / 3, 10)
        calm_short, calm_health = await asyncio.gather(shorts(client, calm_until, gap_s), probes(client, calm_until))
        before = (await client.get("/metrics")).text
        until = time.perf_counter() + seconds
        big_runs = [bigs(client, big_text, until) for _ in range(big_clients)]
        loaded_short, loaded_health, *big_outcomes = await asyncio.gather(shorts(client, until, gap_s), probes(client, until), *big_runs)
        after = (await client.get("/metrics")).text
    batch_sum = histogram(after, "bioner_inference_duration_seconds")[0] - histogram(before, "bioner_inference_duration_seconds")[0]
    batch_count = histogram(after, "bioner_inference_duration_seconds")[1] - histogram(before, "bioner_inference_duration_seconds")[1]
    finished = [o for run in big_outcomes for o in run]

    def ms(latencies: list[float]) -> dict[str, float]:
        return {k: round(v * 1000, 1) for k, v in percentiles(latencies).items()}

    return {
        "short_calm_ms": ms(calm_short),
        "short_loaded_ms": ms(loaded_short),
        "short_requests_loaded": len(loaded_short),
        "health_calm_ms": ms(calm_health),
        "health_loaded_ms": {**ms(loaded_health), "max": round(max(loaded_health) * 1000, 1)},
        "mean_batch_ms": round(1000 * batch_sum / max(batch_count, 1), 1),
        "maximal_requests": len(finished),
        "maximal_statuses": sorted({status for status, _ in finished}),
        "maximal_seconds": [round(s, 1) for _, s in finished],
        "maximal_chars": len(big_text),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long maximal requests are sent (bounded)")
    parser.add_argument("--big-clients", type=int, default=1)
    parser.add_argument("--chars", type=int, default=100_000, help="size of a maximal text (the service's max_text_chars)")
    parser.add_argument("--gap-ms", type=float, default=100.0, help="pause between one short client's requests")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    texts, _ = load_corpus(args.texts, 400) if args.texts.is_dir() else (SHORT * 100, [])
    big_text = maximal_text(texts, args.chars)
    proc, url, _ = start_service(args.model, args.threads, {"BIONER_MAX_TEXT_CHARS": str(args.chars)})
    try:
        report = asyncio.run(scenario(url, big_text, args.big_clients, args.seconds, args.gap_ms / 1000))
    finally:
        stop_service(proc)
    budget = report["short_calm_ms"]["p50"] + 2 * report["mean_batch_ms"]
    report["short_loaded_p50_budget_ms"] = round(budget, 1)
    ok = (
        report["short_loaded_ms"]["p50"] <= budget
        and report["health_loaded_ms"]["max"] < 100
        and report["maximal_requests"] > 0
        and report["maximal_statuses"] == [200]
    )
    verdict(report, ok)


if __name__ == "__main__":
    main()
