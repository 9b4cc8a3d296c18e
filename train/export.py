"""Export a checkpoint to the service's bundle: optimum ONNX export, ORT graph optimisation,
optional int8, and a parity check that fails loudly.

The parity check compares PyTorch and ONNX fp32 logits on real windows (max absolute
difference) and reports dev strict span F1 of PyTorch, ONNX fp32 and the int8 graph side by
side, all through the service's own decoding. It writes ``parity.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from service.bundle_format import BUNDLE_FILES, MODEL_FILE, TOKENIZER_FILE, pipeline_for, read_serving, write_serving
from service.decoding.consistency import Consistency
from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Pipeline, RunBatch, pad_windows
from service.decoding.windows import TextEncoder
from service.runtime.bundle import file_sha256
from train.config import split_seed_of
from train.model_card import portable, write_model_card


class ParityError(RuntimeError):
    pass


def export_onnx(checkpoint: Path, output: Path, optimization_level: int = 0) -> Path:
    """optimum export into ``output`` with the checkpoint's tokenizer and serving files."""
    from optimum.exporters.onnx import main_export

    output.mkdir(parents=True, exist_ok=True)
    main_export(str(checkpoint), output=output, task="token-classification", do_validation=False, local_files_only=True)
    for name in BUNDLE_FILES:
        if (checkpoint / name).exists():
            shutil.copy(checkpoint / name, output / name)
    if optimization_level:
        optimize_copy(output, output, optimization_level)
    return output / "model.onnx"


def optimize_copy(src: Path, dst: Path, optimization_level: int) -> Path:
    """ORT transformer graph optimisation via optimum (level 0 copies the graph unchanged)."""
    dst.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if optimization_level:
            from optimum.onnxruntime import ORTOptimizer
            from optimum.onnxruntime.configuration import OptimizationConfig

            config = OptimizationConfig(optimization_level=optimization_level, optimize_for_gpu=False)
            ORTOptimizer.from_pretrained(src, file_names=["model.onnx"]).optimize(config, tmp, file_suffix=None)
            shutil.copy(Path(tmp) / "model.onnx", Path(tmp) / "out.onnx")
        else:
            shutil.copy(src / "model.onnx", Path(tmp) / "out.onnx")
        shutil.copy(Path(tmp) / "out.onnx", dst / "model.onnx")
    if src != dst:
        for name in BUNDLE_FILES:
            if (src / name).exists():
                shutil.copy(src / name, dst / name)
    return dst / "model.onnx"


def sample_rows(pipeline: Pipeline, texts: list[str], limit: int) -> list[np.ndarray]:
    """Up to ``limit`` real windows, cut as the service cuts them."""
    rows: list[np.ndarray] = []
    for lo in range(0, len(texts), 32):
        rows.extend(pipeline.plan(texts[lo : lo + 32]).rows)
        if len(rows) >= limit:
            break
    return rows[:limit]


def logit_gaps(run_a: Any, run_b: Any, rows: list[np.ndarray], batch_size: int = 8) -> tuple[float, float]:
    """Max and mean |difference| over the real positions' logits, in one pass over ``rows``."""
    worst = total = count = 0.0
    for lo in range(0, len(rows), batch_size):
        ids, mask = pad_windows(rows[lo : lo + batch_size])
        gap = np.abs(run_a(ids, mask) - run_b(ids, mask))[mask.astype(bool)]
        worst, total, count = max(worst, float(gap.max(initial=0.0))), total + float(gap.sum()), count + gap.size
    return worst, total / max(count, 1.0)


def max_logit_difference(run_a: Any, run_b: Any, rows: list[np.ndarray], batch_size: int = 8) -> float:
    return logit_gaps(run_a, run_b, rows, batch_size)[0]


def windows_per_second(run: Any, rows: list[np.ndarray], batch_size: int = 8, repeats: int = 1) -> float:
    ordered = sorted(rows, key=len)
    started = time.perf_counter()
    for _ in range(repeats):
        for lo in range(0, len(ordered), batch_size):
            run(*pad_windows(ordered[lo : lo + batch_size]))
    return len(ordered) * repeats / (time.perf_counter() - started)


def write_golden_answers(output: Path, runners: dict[str, Any], pipeline: Pipeline, graph: str) -> None:
    """``golden.json``: the fp32 graph's entities for the golden texts, and the bundle graph's."""
    import onnxruntime as ort

    from service.runtime.golden import cpu_summary, write_golden
    from train.golden_texts import GOLDEN_TEXTS

    texts = list(GOLDEN_TEXTS)
    reference = pipeline.predict(texts, runners["onnx_fp32"])
    expected = pipeline.predict(texts, runners["onnx_int8"]) if "onnx_int8" in runners else reference
    same = sum([(e.start, e.end, e.label) for e in a] == [(e.start, e.end, e.label) for e in b] for a, b in zip(expected, reference))
    made_on = {"cpu": cpu_summary(), "graph": graph, "onnxruntime": ort.__version__}
    write_golden(output, texts, expected, reference, made_on=made_on)
    print(f"golden answers: {len(texts)} texts, {same} with the same spans as fp32 ({graph})")


def simulated_int8_agreement(
    model: Any, ranges: dict[str, tuple[float, float]], run_int8: RunBatch, rows: list[np.ndarray], kept_fp32: list[str]
) -> dict[str, float]:
    """How far the int8 graph is from the rounding the model trained through (``--qat-epochs``).

    Same scheme, same ranges, so the gap is float noise: where torch's and ONNX Runtime's fp32
    (GELU, LayerNorm) put an activation on the other side of a rounding boundary, one quantum
    differs, and the later layers carry it on. On a tiny model nothing crosses (6e-8); on MiniLM
    the typical gap is a fraction of the int8 graph's gap from fp32, which is the comparison.
    """
    from train.backends import torch_runner
    from train.qat import QuantSim

    sim = QuantSim(model)
    sim.restore(ranges, {node.rsplit("/", 1)[0] for node in kept_fp32})  # the layers export kept fp32 stay so
    try:
        worst, mean = logit_gaps(torch_runner(model), run_int8, rows)
        return {"max_abs_logit_diff": worst, "mean_abs_logit_diff": mean}
    finally:
        sim.enable(False)


def run_export(args: argparse.Namespace) -> int:
    from transformers import AutoModelForTokenClassification

    from service.corpora.columns import parse_tag_map
    from service.corpora.load import split_dev
    from train.backends import onnx_runner, torch_runner
    from train.data import read_all
    from train.evaluate import evaluate_documents
    from train.qat import WEIGHTS as QAT_WEIGHTS
    from train.qat import read_ranges
    from train.quantize import node_groups, quantize_dynamic, quantize_static

    checkpoint, output = Path(args.checkpoint), Path(args.output)
    ranges = None
    serving = read_serving(checkpoint)
    if args.consistency:
        serving = replace(serving, consistency=Consistency(args.consistency))
    model = AutoModelForTokenClassification.from_pretrained(checkpoint)
    scheme = LabelScheme.from_id2label(model.config.id2label)
    raw_dir = Path(tempfile.mkdtemp(prefix="onnx-raw-"))
    export_onnx(checkpoint, raw_dir, optimization_level=0)
    fp32_dir = output if args.quantize == "none" else Path(tempfile.mkdtemp(prefix="onnx-fp32-"))
    optimize_copy(raw_dir, fp32_dir, args.optimization_level)
    pipeline = pipeline_for(serving, TextEncoder.from_file(fp32_dir / TOKENIZER_FILE), scheme)

    join = int((serving.extra.get("train_config") or {}).get("join_sentences", 1))  # dev carved as training carved it
    docs = read_all(args.data, parse_tag_map(args.tag_map), args.separator, join)
    seed = split_seed_of(serving.extra.get("train_config") or {}, args.seed)
    train_docs, dev_docs = split_dev(docs, args.dev_fraction, seed) if docs else ([], [])
    probe_texts = [d.text for d in dev_docs] or ["Interleukin-2 gene expression requires NF-kappa B in human T cells."] * 4
    rows = sample_rows(pipeline, probe_texts, 64)
    runners = {"pytorch": torch_runner(model), "onnx_fp32": onnx_runner(fp32_dir / "model.onnx")}
    parity: dict[str, Any] = {
        "max_abs_logit_diff_fp32": max_logit_difference(runners["pytorch"], runners["onnx_fp32"], rows),
        "tolerance": args.tolerance,
        "probe_windows": len(rows),
    }
    print(f"parity: max |logit(PyTorch) - logit(ONNX fp32)| = {parity['max_abs_logit_diff_fp32']:.2e} over {len(rows)} windows")
    if parity["max_abs_logit_diff_fp32"] > args.tolerance:
        raise ParityError(f"ONNX fp32 differs from PyTorch by {parity['max_abs_logit_diff_fp32']:.3e} > {args.tolerance}")

    if args.quantize != "none":
        output.mkdir(parents=True, exist_ok=True)
        for name in BUNDLE_FILES:
            if (fp32_dir / name).exists():
                shutil.copy(fp32_dir / name, output / name)
        # Quantise the unfused graph: fused Attention nodes hide their MatMuls from the quantiser.
        if args.quantize == "dynamic":
            quantize_dynamic(raw_dir, output)
        else:
            calibration = sample_rows(pipeline, [d.text for d in train_docs] or probe_texts, args.calibration_windows)
            groups = node_groups(raw_dir / "model.onnx")
            keep = [*(args.exclude_nodes or ()), *(n for g in args.keep_fp32 for n in groups[g])]
            parity["int8_nodes_kept_fp32"] = {"groups": args.keep_fp32, "nodes": len(keep)}
            trained = read_ranges(checkpoint)
            ranges = trained if args.int8_ranges == "trained" else None
            if trained is not None and args.int8_weights != QAT_WEIGHTS:
                message = f"this checkpoint was trained for {QAT_WEIGHTS} int8 weights (--qat-epochs)"
                if ranges is not None:
                    raise ValueError(f"{message}: export with --int8-weights {QAT_WEIGHTS}")
                print(f"warning: {message}; its trained ranges are set aside here, so measure this graph", file=sys.stderr)
            parity["int8_ranges"] = "trained (--qat-epochs)" if ranges is not None else f"calibrated ({args.calibration_method})"
            parity["int8_weights"] = args.int8_weights
            if ranges is not None and "attention_scores" not in args.keep_fp32:
                print("warning: the attention products rounded here were not simulated in training", file=sys.stderr)
            quantize_static(
                raw_dir / "model.onnx",
                output / "model.onnx",
                calibration,
                exclude=keep,
                method=args.calibration_method,
                weights=args.int8_weights,
                ranges=ranges,
            )
        runners["onnx_int8"] = onnx_runner(output / "model.onnx")
        parity["max_abs_logit_diff_int8"], mean_int8 = logit_gaps(runners["pytorch"], runners["onnx_int8"], rows)
        if args.quantize == "static" and ranges is not None:
            agreement = simulated_int8_agreement(model, ranges, runners["onnx_int8"], rows, keep)
            agreement["mean_abs_logit_diff_fp32"] = mean_int8
            parity["int8_vs_simulated"] = agreement
            print(f"parity: ONNX int8 against PyTorch with the simulated int8 it trained through: {agreement}")

    scores: dict[str, Any] = {}
    for name, run in runners.items():
        if dev_docs:
            scores[name] = evaluate_documents(dev_docs, pipeline, run)
            print(f"dev strict span F1 {name}: {scores[name]['micro']['f1']:.4f}")
        parity.setdefault("windows_per_second", {})[name] = windows_per_second(run, rows)
    parity["dev"] = scores
    temperature = 1.0
    if dev_docs and args.calibrate:
        from train.calibrate import calibrate

        shipped = runners.get("onnx_int8", runners["onnx_fp32"])
        try:
            parity["calibration"] = calibrate(dev_docs, pipeline, shipped, output)
        except (ValueError, KeyError) as exc:  # e.g. dev types the model lacks: ship raw scores, say so
            print(f"calibration skipped, raw scores kept: {type(exc).__name__}: {exc}", file=sys.stderr)
            parity["calibration"] = {"skipped": str(exc), "temperature": 1.0, "ece_before": float("nan"), "ece_after": float("nan")}
        temperature = parity["calibration"]["temperature"]
        print(
            f"calibration: temperature {temperature:.3f}, entity ECE {parity['calibration']['ece_before']:.4f} -> "
            f"{parity['calibration']['ece_after']:.4f}"
        )
    graph = {"none": "fp32", "dynamic": "int8_dynamic"}.get(args.quantize, f"int8_static_{args.int8_weights}")
    write_golden_answers(output, runners, pipeline.with_temperature(temperature), graph)
    extra = dict(serving.extra)
    if "train_config" in extra:
        extra["train_config"] = {k: portable(v) if k in ("base_model", "output") else v for k, v in extra["train_config"].items()}
    if "souped_from" in extra:  # the runs a soup averaged, written as the card writes them
        extra["souped_from"], extra["souped_output"] = [portable(c) for c in extra["souped_from"]], portable(extra.get("souped_output", ""))
    released = replace(
        serving,
        name=args.name or output.name,
        version=args.version,
        temperature=temperature,
        extra={**extra, "quantization": args.quantize, "onnx_sha256": file_sha256(output / MODEL_FILE)},
    )
    write_serving(output, released)
    meta = released.to_json()
    (output / "parity.json").write_text(json.dumps(parity, indent=2))

    write_model_card(output, meta, parity, ["bioner", *getattr(args, "argv", sys.argv[1:])])
    for scratch in {raw_dir, fp32_dir} - {output}:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"bundle written to {output} ({(output / 'model.onnx').stat().st_size / 1e6:.1f} MB model.onnx)")
    return 0
