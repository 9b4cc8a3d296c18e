"""``bioner annotate`` side by side in one run: 1 process, 2 processes, 1 process with all cores'
ONNX Runtime threads, and Ray Data, on the same input built from the JNLPBA abstracts.

Prints documents/s and tokens/s per way, the ratios against one process with one thread, checks
that every way wrote byte-identical output, and the core-hours to annotate PubMed's abstracts at
the best measured rate. ``python loadtest/bulk_bench.py --out loadtest/results/bulk.json``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import ROOT, add_common_args, cpu_model  # noqa: E402

sys.path.insert(0, str(ROOT))

from service.bulk.annotator import Options  # noqa: E402
from service.bulk.files import plan_jobs  # noqa: E402
from service.bulk.local import run_local  # noqa: E402
from service.documents.formats import Format  # noqa: E402

PUBMED_ABSTRACTS = 36_000_000  # PubTator3's precomputed abstracts (FIELD-NOTES); the order of PubMed's size


def build_input(texts: Path, folder: Path, per_file: int, limit: int) -> int:
    """JNLPBA's abstracts as JSON Lines files of ``per_file`` documents (one passage each)."""
    files = sorted(texts.glob("*.txt"))[:limit]
    for start in range(0, len(files), per_file):
        lines = [json.dumps({"id": f.stem, "text": f.read_text(encoding="utf-8")}) for f in files[start : start + per_file]]
        (folder / f"part{start // per_file:03d}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(files)


def outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*")) if p.is_file()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--limit", type=int, default=2000, help="abstracts")
    parser.add_argument("--per-file", type=int, default=100)
    parser.add_argument("--ways", nargs="+", default=["1x1", "1x2", "2x1", "ray2x1"], help="PROCESSESxTHREADS, ray prefix for Ray Data")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bulk-bench-"))
    source = work / "in"
    source.mkdir()
    n_docs = build_input(args.texts, source, args.per_file, args.limit)
    results: dict[str, dict[str, Any]] = {}
    reference: dict[str, bytes] | None = None
    for way in args.ways:
        on_ray = way.startswith("ray")
        workers, threads = (int(x) for x in way.removeprefix("ray").split("x"))
        options = Options(args.model, Format.JSONL, threads=threads)
        out = work / way
        jobs = plan_jobs([str(source)], out, options.output_format)
        if on_ray:
            import ray

            from service.bulk.on_ray import run_on_ray

            ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
            try:
                totals = run_on_ray(jobs, options, workers)
            finally:
                ray.shutdown()
        else:
            totals = run_local(jobs, options, workers, progress=False)
        summary = totals.as_dict()
        written = outputs(out)
        reference = reference or written
        results[way] = {
            "processes": workers,
            "threads_each": threads,
            "ray": on_ray,
            "seconds": round(totals.seconds, 2),
            "documents_per_s": round(float(summary["documents_per_s"]), 2),
            "tokens_per_s": round(float(summary["tokens_per_s"]), 1),
            "identical_to_first": written == reference,
        }
        print(way, json.dumps(results[way]), flush=True)
    base = results[args.ways[0]]["documents_per_s"]
    best = max(results.values(), key=lambda r: r["documents_per_s"])
    tokens_per_doc = next(iter(results.values()))["tokens_per_s"] / base
    core_seconds_per_doc = best["processes"] * best["threads_each"] / best["documents_per_s"]
    report = {
        "cpu": cpu_model(),
        "cores": cores,
        "model": str(args.model),
        "documents": n_docs,
        "tokens_per_document": round(tokens_per_doc, 1),
        "ways": {k: {**v, "vs_first": round(v["documents_per_s"] / base, 2)} for k, v in results.items()},
        "pubmed": {
            "abstracts": PUBMED_ABSTRACTS,
            "core_hours": round(PUBMED_ABSTRACTS * core_seconds_per_doc / 3600),
            "at": f"{best['documents_per_s']} documents/s on {best['processes'] * best['threads_each']} cores",
        },
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2), encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
