"""Texts/s against cores: the service pinned to 1, 2, 4, ... cores, under each split of them into
workers x inference threads, so that a lab can size a machine from its own measurements.

    python loadtest/cores.py --model models/bioner-minilm-l3-jnlpba --service-env BIONER_WINDOW_ALIGN=sentences

For each core count k (``--cores``; default: powers of two up to this machine's, and its own
count), the server process and its workers are pinned to cores 0..k-1 and the load client to the
others (on all of them when k is every core: it then competes with the server, as in the other
benchmarks). Each layout has ``workers x threads = k``. Layouts run in turn, ``--repeat`` times
(A, B, C, A, B, C...), so a drifting machine weighs on each alike. The table gives texts/s, per
core, and against one core; the JSON keeps every pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from pathlib import Path
from typing import Any

from bench import drive, f1, load_corpus, start_service
from harness import ROOT, add_common_args, cpu_model, service_env, stop_service


def layouts(cores: int) -> list[tuple[int, int]]:
    """(workers, threads each) with workers x threads = cores: one process, one per core, and
    the powers of two between."""
    workers = sorted({1, cores, *(w for w in (2, 4, 8, 16, 32, 64) if w < cores and cores % w == 0)})
    return [(w, cores // w) for w in workers]


def core_counts(available: int) -> list[int]:
    counts = [k for k in (1, 2, 4, 8, 16, 32, 64, 128) if k < available]
    return [*counts, available]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--cores", type=int, nargs="*", default=None)
    parser.add_argument("--concurrency-per-core", type=int, default=8, help="client concurrency: this many per server core (at least 16)")
    parser.add_argument("--texts-per-request", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--service-env", nargs="*", default=[], help="extra BIONER_*=value settings for every run")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results" / "cores.json")
    args = parser.parse_args()
    texts, gold = load_corpus(args.texts, args.limit)
    mine = sorted(os.sched_getaffinity(0))
    counts = args.cores or core_counts(len(mine))
    common = service_env(args.service_env)
    plan = [(k, w, t) for k in counts for w, t in layouts(k)]
    passes: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        for k, workers, threads in plan:
            server, client = mine[:k], mine[k:] or mine
            os.sched_setaffinity(0, client)
            env = {**common, "BIONER_WORKERS": str(workers), "BIONER_INFERENCE_LANES": "1", "BIONER_INTRA_OP_THREADS": str(threads)}
            proc, url, _ = start_service(args.model, threads, env, cpus=server)
            try:
                run = asyncio.run(drive(url, texts, max(16, args.concurrency_per_core * k), args.texts_per_request, server_pid=proc.pid))
            finally:
                stop_service(proc)
                os.sched_setaffinity(0, mine)
            passes.append(
                {
                    "cores": k,
                    "workers": workers,
                    "threads": threads,
                    "texts_per_s": run["texts_per_s"],
                    "p50": run["p50"],
                    "p99": run["p99"],
                    "server_cpu_ms_per_text": run["server_cpu_ms_per_text"],
                    "f1": f1(gold, run["predicted"]),
                }
            )
            print(json.dumps(passes[-1]), flush=True)
    one_core = statistics.mean(p["texts_per_s"] for p in passes if p["cores"] == min(counts)) / min(counts)
    lines = [
        f"{len(texts)} texts, {cpu_model()}, {len(mine)} cores here; client concurrency {args.concurrency_per_core} per server core "
        f"(at least 16), {args.texts_per_request} text(s) per request; {args.repeat} passes each, in turn.",
        "",
        "| cores | workers x threads | texts/s (each pass) | mean | per core | vs 1 core | p99 ms (mean) | F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, workers, threads in plan:
        mine_runs = [p for p in passes if (p["cores"], p["workers"]) == (k, workers)]
        rates = [p["texts_per_s"] for p in mine_runs]
        mean = statistics.mean(rates)
        lines.append(
            f"| {k} | {workers} x {threads} | {', '.join(f'{r:.1f}' for r in rates)} | {mean:.1f} | {mean / k:.1f} | "
            f"{mean / one_core:.2f}x | {1000 * statistics.mean(p['p99'] for p in mine_runs):.0f} | {mine_runs[0]['f1']:.4f} |"
        )
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu": cpu_model(), "passes": passes, "table": lines}, indent=1))
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
