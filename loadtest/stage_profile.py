"""Where a text's time goes: each stage of the service's own code path timed in-process, then the
same texts through the real server, so the HTTP share is what is left.

Stages (the functions the engine calls, in its order): tokenising (``TextEncoder.encode_batch``),
window planning (``Pipeline.plan`` on the encoded texts), inference (``Pipeline.run``: padding and
ONNX Runtime), stitching (``Pipeline.token_logits``), decoding (the rest of ``Pipeline.finish``:
softmax, calibration, BIO decoding, spans) and JSON (the route's entity dicts through orjson).
``--group`` texts go through together, as a request of that many texts would.

The service row runs the same texts one request at a time (concurrency 1), so its time per text
minus the in-process sum is HTTP, validation and the event loop. One run, same machine, same
windows (``--window-align`` etc. apply to both), as a Markdown table and JSON.

    python loadtest/stage_profile.py --model models/bioner-minilm-jnlpba --texts ../shared/data/jnlpba/train --limit 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import add_window_args, drive, load_corpus, start_service, window_overrides  # noqa: E402
from harness import ROOT, add_common_args, cpu_model, stop_service, write_report  # noqa: E402

sys.path.insert(0, str(ROOT))

from service.api.routes import _entity  # noqa: E402
from service.bundle_format import pipeline_for  # noqa: E402
from service.runtime.bundle import load_bundle  # noqa: E402
from service.runtime.session import OnnxSession  # noqa: E402

STAGES = ("tokenise", "plan windows", "inference", "stitch", "decode", "JSON")


def profile_in_process(model: Path, texts: list[str], threads: int, group: int, batch_size: int, window: dict[str, Any]) -> dict[str, Any]:
    bundle = load_bundle(model)
    session = OnnxSession(bundle.onnx_path, len(bundle.scheme), intra_op_threads=threads)
    pipeline = pipeline_for(bundle.serving, bundle.encoder, bundle.scheme, bundle.pad_id, **window)
    pipeline.predict(texts[:2], session.run)  # warm: first-run allocations are not a stage
    spent = dict.fromkeys(STAGES, 0.0)
    work = tokens = 0
    for lo in range(0, len(texts), group):
        chunk = texts[lo : lo + group]
        t0 = time.perf_counter()
        encoded = pipeline.encoder.encode_batch(chunk)
        t1 = time.perf_counter()
        plan = pipeline.plan(chunk, encoded)
        t2 = time.perf_counter()
        logits = pipeline.run(session.run, plan, batch_size)
        t3 = time.perf_counter()
        pipeline.token_logits(plan, logits)
        t4 = time.perf_counter()
        found = pipeline.finish(plan, logits)  # stitches again: its stitching time is taken off below
        t5 = time.perf_counter()
        orjson.dumps({"entities": [[_entity(e) for e in entities] for entities in found]}, option=orjson.OPT_SERIALIZE_NUMPY)
        t6 = time.perf_counter()
        for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, (t5 - t4) - (t4 - t3), t6 - t5)):
            spent[stage] += seconds
        work, tokens = work + plan.work_tokens, tokens + plan.tokens
    return {"seconds": spent, "texts": len(texts), "tokens": tokens, "work_per_token": work / tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--group", type=int, default=1, help="texts per in-process call (a request's texts)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per inference batch")
    add_window_args(parser)
    parser.add_argument("--no-service", action="store_true", help="in-process stages only")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtest" / "results")
    args = parser.parse_args()
    texts, _ = load_corpus(args.texts, args.limit)
    window, window_env = window_overrides(args)
    env = {"BIONER_MAX_BATCH_SIZE": str(args.batch_size), **window_env}

    result = profile_in_process(args.model, texts, args.threads, args.group, args.batch_size, window)
    in_process = sum(result["seconds"].values())
    rows = [(stage, seconds) for stage, seconds in result["seconds"].items()]
    if not args.no_service:
        proc, url, _ = start_service(args.model, args.threads, env)
        try:
            served = asyncio.run(drive(url, texts, 1))
        finally:
            stop_service(proc)
        result["service_c1_seconds"] = served["seconds"]
        rows.append(("HTTP, validation, event loop (service at c=1 minus the above)", served["seconds"] - in_process))
    total = sum(seconds for _, seconds in rows)
    lines = [
        f"{len(texts)} texts, {result['tokens']} subword tokens, {result['work_per_token']:.3f} tokens of model work per text token; "
        f"{cpu_model()}, {os.cpu_count()} cores, {args.threads} inference threads; {args.group} text(s) per call, "
        f"batches of {args.batch_size} windows.",
        "",
        "| stage | ms per text | share |",
        "|---|---|---|",
        *[f"| {stage} | {seconds * 1000 / len(texts):.2f} | {seconds / total:.1%} |" for stage, seconds in rows],
        f"| total | {total * 1000 / len(texts):.2f} | 100% |",
    ]
    write_report(args.out, "profile", lines, result)


if __name__ == "__main__":
    main()
