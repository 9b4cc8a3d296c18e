"""Tune the batcher: the service at one concurrency under several settings, same texts, one run.

python loadtest/sweep.py --concurrency 16 --limit 200
python loadtest/sweep.py --only "batch 8, wait 0 ms (default)" "2 workers, 1 inference thread each" --repeat 3 \
    --service-env BIONER_WINDOW_ALIGN=sentences --texts-per-request 1

Settings run in turn (A, B, A, B, ...), so a machine's drift lands on every setting alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os

from bench import drive, f1, load_corpus, start_service
from harness import add_common_args, service_env, stop_service

CONFIGS = {
    "batch 8, wait 0 ms (default)": {},
    "1 inference lane, 2 threads (the default before 2026-12-07)": {"BIONER_INFERENCE_LANES": "1", "BIONER_INTRA_OP_THREADS": "2"},
    "wait 2 ms": {"BIONER_MAX_WAIT_MS": "2"},
    "batch 4": {"BIONER_MAX_BATCH_SIZE": "4"},
    "batch 16": {"BIONER_MAX_BATCH_SIZE": "16"},
    "batch 32": {"BIONER_MAX_BATCH_SIZE": "32"},
    "wait 10 ms": {"BIONER_MAX_WAIT_MS": "10"},
    "1 inference thread": {"BIONER_INFERENCE_LANES": "1", "BIONER_INTRA_OP_THREADS": "1"},
    "2 workers, 1 inference thread each": {"BIONER_WORKERS": "2", "BIONER_INFERENCE_LANES": "1", "BIONER_INTRA_OP_THREADS": "1"},
    "2 inference lanes, 1 thread each": {"BIONER_INFERENCE_LANES": "2", "BIONER_INTRA_OP_THREADS": "1"},
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
    parser.add_argument("--service-env", nargs="*", default=[], help="extra BIONER_*=value settings for every run")
    parser.add_argument("--texts-per-request", type=int, default=1)
    args = parser.parse_args()
    common = service_env(args.service_env)
    texts, gold = load_corpus(args.texts, args.limit)
    threads = os.cpu_count() or 1
    print(
        f"| setting (c={args.concurrency}, {args.texts_per_request} per request) | texts/s | p50 ms | p99 ms | windows/batch "
        "| server CPU ms/text | F1 |\n|---|---|---|---|---|---|---|"
    )
    chosen = [(n, CONFIGS[n]) for n in args.only] if args.only else list(CONFIGS.items())
    for name, extra in chosen * args.repeat:
        extra = {**common, **extra}
        proc, url, _ = start_service(args.model, threads, extra)
        try:
            run = asyncio.run(drive(url, texts, args.concurrency, args.texts_per_request, server_pid=proc.pid))
        finally:
            stop_service(proc)
        print(
            f"| {name} | {run['texts_per_s']:.1f} | {run['p50'] * 1000:.0f} | {run['p99'] * 1000:.0f} | "
            f"{run['mean_batch_windows']:.2f} | {run['server_cpu_ms_per_text']:.1f} | {f1(gold, run['predicted']):.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
