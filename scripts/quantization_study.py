"""Compare ONNX variants of one checkpoint side by side: dev strict span F1, speed, determinism.

For every scheme: dev F1 through the service's decoding; windows/s of a raw ORT session on
length-sorted batches of 8; and whether each text's entities are the same when its windows run
alone as when they share a batch with other texts (a service must answer the same text the
same way under any load). Writes a Markdown table and a JSON file.

    python scripts/quantization_study.py --checkpoint runs/jnlpba-minilm \
        --data ../shared/data/jnlpba/train --out runs/quant-study

A scheme is a name below or ``static:GROUP+GROUP@METHOD``: static int8 with those node groups of
``train.quantize.NODE_GROUPS`` kept in fp32 (``-``: none) and calibration METHOD (minmax,
percentile, entropy); ``--no-speed`` skips the timing (while the CPU is shared).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from service.bundle_format import CONFIG_FILE, TOKENIZER_FILE, pipeline_for, read_serving
from service.corpora import read_corpus
from service.corpora.load import split_dev
from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Pipeline
from service.decoding.windows import TextEncoder
from train.backends import onnx_runner
from train.evaluate import evaluate_documents
from train.export import export_onnx, optimize_copy, sample_rows, windows_per_second
from train.quantize import matmul_nodes, node_groups, quantize_dynamic, quantize_static


def determinism(texts: list[str], pipeline: Pipeline, run: Any) -> tuple[int, int]:
    """Texts whose spans, and texts whose scores, differ between batch-of-1 and mixed batches of 8."""
    alone = pipeline.predict(texts, run, batch_size=1)
    mixed = pipeline.predict(texts, run, batch_size=8)
    spans = sum([(e.start, e.end, e.label) for e in a] != [(e.start, e.end, e.label) for e in b] for a, b in zip(alone, mixed))
    return spans, sum(a != b for a, b in zip(alone, mixed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--max-dev-docs", type=int, default=0, help="score only the first N dev documents (0: all)")
    parser.add_argument(
        "--graph", action="append", default=[], metavar="NAME=PATH", help="also a ready graph (a shipped bundle's model.onnx)"
    )
    parser.add_argument("--no-speed", action="store_true", help="dev F1 and the batching check only (e.g. while the CPU is shared)")
    parser.add_argument(
        "--schemes",
        nargs="*",
        default=["fp32", "fp32_o2", "dynamic", "dynamic_pc", "static_minmax", "static_percentile", "static_skip_ends"],
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    serving = read_serving(Path(args.checkpoint))
    raw = out / "raw"
    export_onnx(Path(args.checkpoint), raw, optimization_level=0)
    scheme = LabelScheme.from_id2label(json.loads((raw / CONFIG_FILE).read_text())["id2label"])
    pipeline = pipeline_for(serving, TextEncoder.from_file(raw / TOKENIZER_FILE), scheme)
    train_docs, dev_docs = split_dev(read_corpus(args.data), args.dev_fraction, args.seed)
    if args.max_dev_docs:
        dev_docs = dev_docs[: args.max_dev_docs]
    calibration = sample_rows(pipeline, [d.text for d in train_docs], 256)
    speed_rows = sample_rows(pipeline, [d.text for d in dev_docs], 256)
    nodes = matmul_nodes(raw / "model.onnx")
    groups = node_groups(raw / "model.onnx")
    # The first layer's and the classifier's MatMuls are commonly the most sensitive to int8.
    ends = [n for n in nodes if "layer.0/" in n or "classifier" in n]

    def static_except(*names: str) -> Any:
        keep = [n for g in names for n in groups[g]]
        return lambda d: quantize_static(raw / "model.onnx", d / "model.onnx", calibration, exclude=keep)

    def static_weights(weights: str) -> Any:
        keep = [n for g in ("attention_scores", "ffn_out") for n in groups[g]]
        return lambda d: quantize_static(raw / "model.onnx", d / "model.onnx", calibration, exclude=keep, weights=weights)

    builders: dict[str, Any] = {f"static_fp32_{g}": static_except(g) for g in groups}
    builders["static_fp32_scores_ffn_out"] = static_except("attention_scores", "ffn_out")
    builders["static_fp32_scores_ffn_out_cls"] = static_except("attention_scores", "ffn_out", "classifier")
    # The shipped recipe (scores and FFN down-projections in fp32) in each weight format (train/quantize.py).
    builders.update({f"static_{w}": static_weights(w) for w in ("s8", "s7", "u8")})
    builders.update(
        {
            "fp32": lambda d: optimize_copy(raw, d, 0),
            "fp32_o2": lambda d: optimize_copy(raw, d, 2),
            "dynamic": lambda d: quantize_dynamic(raw, d, per_channel=False),
            "dynamic_pc": lambda d: quantize_dynamic(raw, d, per_channel=True),
            "static_minmax": lambda d: quantize_static(raw / "model.onnx", d / "model.onnx", calibration, method="minmax"),
            "static_percentile": lambda d: quantize_static(raw / "model.onnx", d / "model.onnx", calibration, method="percentile"),
            "static_skip_ends": lambda d: quantize_static(raw / "model.onnx", d / "model.onnx", calibration, exclude=ends),
        }
    )

    def static_spec(spec: str) -> Any:
        """``static:GROUP+GROUP@METHOD``: those groups kept in fp32 (``-`` for none), ranges by METHOD."""
        kept, _, method = spec.removeprefix("static:").partition("@")
        keep = [n for g in kept.split("+") if g != "-" for n in groups[g]]
        return lambda d: quantize_static(raw / "model.onnx", d / "model.onnx", calibration, exclude=keep, method=method or "minmax")

    builders.update({name: static_spec(name) for name in args.schemes if name.startswith("static:")})
    ready = dict(g.split("=", 1) for g in args.graph)
    builders.update({name: (lambda d, path=path: shutil.copy(path, d / "model.onnx")) for name, path in ready.items()})
    results: dict[str, dict[str, Any]] = {}
    for name in [*args.schemes, *ready]:
        folder = out / name.replace(":", "-").replace("+", "-").replace("@", "-")
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        builders[name](folder)
        run = onnx_runner(folder / "model.onnx", n_labels=len(scheme))
        report = evaluate_documents(dev_docs, pipeline, run)
        speed = None
        if not args.no_speed:
            windows_per_second(run, speed_rows[:16])  # warm-up
            speed = windows_per_second(run, speed_rows, repeats=2)
        changed_spans, changed_scores = determinism([d.text for d in dev_docs[:100]], pipeline, run)
        results[name] = {
            "f1": report["micro"]["f1"],
            "per_type": {k: v["f1"] for k, v in report["per_type"].items()},
            "windows_per_second": speed,  # null (not NaN, which is no JSON) under --no-speed
            "mb": (folder / "model.onnx").stat().st_size / 1e6,
            "texts_changed_by_batching": changed_spans,
            "scores_changed_by_batching": changed_scores,
            "build_seconds": time.perf_counter() - started,
        }
        print(name, json.dumps(results[name]))
    base = results.get("fp32", next(iter(results.values())))
    lines = [
        "| scheme | dev F1 | Δ vs fp32 (points) | windows/s | speed vs fp32 | MB "
        "| spans changed by batch-mates (of 100 texts) | scores changed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        rate, ratio = "—", "—"
        if r["windows_per_second"] is not None and base["windows_per_second"] is not None:
            rate, ratio = f"{r['windows_per_second']:.1f}", f"{r['windows_per_second'] / base['windows_per_second']:.2f}x"
        lines.append(
            f"| {name} | {r['f1']:.4f} | {100 * (r['f1'] - base['f1']):+.2f} | {rate} | {ratio} | {r['mb']:.1f} | "
            f"{r['texts_changed_by_batching']} | {r['scores_changed_by_batching']} |"
        )
    (out / "study.md").write_text("\n".join(lines) + "\n")
    (out / "study.json").write_text(json.dumps(results, indent=2))
    print("\n".join(lines))
    shutil.rmtree(raw, ignore_errors=True)


if __name__ == "__main__":
    main()
