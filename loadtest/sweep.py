"""Tune the batcher: the service at one concurrency under several settings, same texts, one run.

python loadtest/sweep.py --concurrency 16 --limit 200
"""

from __future__ import annotations

import argparse
import asyncio
import os

from bench import drive, f1, load_corpus, start_service
from harness import add_common_args, stop_service

CONFIGS = {
    "batch 8, wait 0 ms (default)": {},
    "wait 2 ms": {"BIONER_MAX_WAIT_MS": "2"},
    "batch 4": {"BIONER_MAX_BATCH_SIZE": "4"},
    "batch 16": {"BIONER_MAX_BATCH_SIZE": "16"},
    "batch 32": {"BIONER_MAX_BATCH_SIZE": "32"},
    "wait 10 ms": {"BIONER_MAX_WAIT_MS": "10"},
    "1 inference thread": {"BIONER_INTRA_OP_THREADS": "1"},
    "no thread spinning": {"BIONER_THREAD_SPINNING": "false"},
    "overlap 16 (stride)": {"BIONER_STRIDE": "16"},
    "graph optimisation basic": {"BIONER_GRAPH_OPTIMIZATION": "basic"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--only", nargs="*", default=None, help="names of CONFIGS to run")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    texts, gold = load_corpus(args.texts, args.limit)
    threads = os.cpu_count() or 1
    print(f"| setting (c={args.concurrency}) | texts/s | p50 ms | p99 ms | windows/batch | F1 |\n|---|---|---|---|---|---|")
    chosen = [(n, CONFIGS[n]) for n in args.only] if args.only else list(CONFIGS.items())
    for name, extra in chosen * args.repeat:
        extra = {"BIONER_INTRA_OP_THREADS": str(threads), **extra}
        proc, url, _ = start_service(args.model, threads, extra)
        try:
            run = asyncio.run(drive(url, texts, args.concurrency))
        finally:
            stop_service(proc)
        print(
            f"| {name} | {run['texts_per_s']:.1f} | {run['p50'] * 1000:.0f} | {run['p99'] * 1000:.0f} | "
            f"{run['mean_batch_windows']:.2f} | {f1(gold, run['predicted']):.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
