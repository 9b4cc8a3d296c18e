"""Decoding alone, side by side: requests decoded one at a time (``Pipeline.finish``) against the
requests back from one inference batch decoded together (``Pipeline.finish_many``, as the
service's decode batcher does), on the same texts' logits, in one run.

Each text is one request, its windows run once through ONNX Runtime first; only decoding is
timed (words, Viterbi, CRF marginals, spans), every decoding the bundle offers. The answers of
the two ways must be identical (checked, bit for bit); the table gives ms per text and the ratio.

    python loadtest/decode_bench.py --model models/bioner-minilm-jnlpba --texts ../shared/data/jnlpba/train --limit 200
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import load_corpus  # noqa: E402
from harness import ROOT, add_common_args, cpu_model, write_report  # noqa: E402

sys.path.insert(0, str(ROOT))

from service.bundle_format import pipeline_for  # noqa: E402
from service.decoding.pipeline import Finishing  # noqa: E402
from service.runtime.bundle import load_bundle  # noqa: E402
from service.runtime.session import OnnxSession  # noqa: E402


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """The fastest of ``repeats`` runs: decoding is deterministic, so the minimum is its cost."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 8, 16], help="requests decoded together")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results")
    args = parser.parse_args()
    texts, _ = load_corpus(args.texts, args.limit)
    bundle = load_bundle(args.model)
    session = OnnxSession(bundle.onnx_path, len(bundle.scheme), intra_op_threads=os.cpu_count() or 1)
    pipeline = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id)
    plans = [pipeline.plan([t]) for t in texts]
    logits = [pipeline.run(session.run, plan) for plan in plans]
    tokens = sum(len(plan.texts[0].encoded) for plan in plans)

    results: dict[str, Any] = {"machine": {"cpu": cpu_model(), "cpus": os.cpu_count()}, "texts": len(texts), "tokens": tokens, "rows": {}}
    lines = [
        f"{len(texts)} texts (one per request), {tokens} subword tokens; {cpu_model()}, {os.cpu_count()} cores; best of {args.repeats}.",
        "",
        "| decoding | one request at a time: ms per text | " + " | ".join(f"{g} together: ms per text (ratio)" for g in args.groups) + " |",
        "|---" * (2 + len(args.groups)) + "|",
    ]
    for decoding in pipeline.decodings:
        options = pipeline.options(decoding=decoding)
        jobs = [Finishing(plan, window_logits, options) for plan, window_logits in zip(plans, logits)]
        alone = [pipeline.finish(job.plan, job.window_logits, job.options) for job in jobs]
        alone_s = best_of(args.repeats, lambda: [pipeline.finish(j.plan, j.window_logits, j.options) for j in jobs])
        row: dict[str, Any] = {"alone_ms": alone_s * 1000 / len(texts)}
        cells = []
        for group in args.groups:
            chunks = [jobs[lo : lo + group] for lo in range(0, len(jobs), group)]
            together = [found for chunk in chunks for found in pipeline.finish_many(chunk)]
            if together != alone:
                raise SystemExit(f"{decoding.value}: decoding {group} together changed an answer")
            seconds = best_of(args.repeats, lambda: [pipeline.finish_many(chunk) for chunk in chunks])  # noqa: B023
            row[f"together_{group}_ms"] = seconds * 1000 / len(texts)
            cells.append(f"{seconds * 1000 / len(texts):.2f} ({alone_s / seconds:.2f}x)")
        results["rows"][decoding.value] = row
        lines.append(f"| {decoding.value} | {row['alone_ms']:.2f} | " + " | ".join(cells) + " |")
    write_report(args.out, "decode", lines, results)


if __name__ == "__main__":
    main()
