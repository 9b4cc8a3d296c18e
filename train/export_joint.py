"""``bioner export-joint``: a multi-head checkpoint as one ONNX graph, every head's logits side by side.

The graph is traced from :class:`train.joint.MultiHeadTagger` (optimum exports transformers'
single-head classes only), checked against PyTorch on real windows, and written as a bundle whose
``serving.json`` maps the logits' columns to heads; golden answers are written as for any bundle.
With ``--quantize static`` the bundle's graph is static int8 with the single-head recipe (s7
weights: the same integers on every CPU; attention scores and FFN outputs kept in fp32),
calibrated on the training corpora's windows; each head's dev F1 is reported for fp32 and int8.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from service.bundle_format import BUNDLE_FILES, CONFIG_FILE, MODEL_FILE, SERVING_FILE, TOKENIZER_FILE, pipeline_for, write_serving
from service.corpora import Document
from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Pipeline
from service.decoding.windows import TextEncoder
from service.runtime.bundle import file_sha256
from train.backends import onnx_runner, torch_runner
from train.corpus_spec import merged, parse_heads, source_splits
from train.evaluate import evaluate_documents
from train.export import ParityError, max_logit_difference, sample_rows, write_golden_answers
from train.golden_texts import GOLDEN_TEXTS
from train.joint import ENCODER_DIR, MultiHeadTagger, load_checkpoint
from train.model_card import portable
from train.quantize import node_groups, quantize_static


class _Graph(torch.nn.Module):
    def __init__(self, model: MultiHeadTagger) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(input_ids, attention_mask).logits
        return logits


def export_graph(model: MultiHeadTagger, path: Path) -> None:
    ids = torch.ones((2, 16), dtype=torch.long)
    torch.onnx.export(
        _Graph(model),
        (ids, torch.ones_like(ids)),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["logits"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "sequence"},
            "logits": {0: "batch", 1: "sequence"},
        },
        opset_version=17,
        dynamo=False,
    )


def dev_splits(train_config: dict[str, Any]) -> dict[str, tuple[list[Document], list[Document]]]:
    """Each head's (train, dev) documents, carved exactly as ``train-joint`` carved them
    (a head whose files are not here is left out)."""
    out = {}
    for head in parse_heads(train_config.get("corpora", [])):
        if all(Path(source.path).exists() for source in head.sources):
            out[head.name] = merged(
                source_splits(
                    head,
                    train_config.get("separator", " "),
                    train_config.get("join_sentences", 1),
                    train_config.get("dev_fraction", 0.1),
                    train_config.get("seed", 13),
                )
            )
    return out


def calibration_rows(pipeline: Pipeline, texts: dict[str, list[str]], limit: int, seed: int) -> dict[str, list[np.ndarray]]:
    """Equal shares of windows from every corpus, each from a seeded shuffle of its documents.

    0.2.0 took the first windows in corpus order, so int8's activation ranges were BC5CDR's alone;
    on the finished model that cost LINNAEUS 2.1 points, against +0.2 with these shares (README,
    "int8 of the joint model": on the epoch-1 checkpoint the shares were no better).
    """
    share = max(1, limit // len(texts))
    rows = {}
    for name in sorted(texts):
        shuffled = list(texts[name])
        random.Random(seed).shuffle(shuffled)
        rows[name] = sample_rows(pipeline, shuffled, share)
    return rows


def run_export_joint(args: argparse.Namespace) -> int:
    checkpoint, output = Path(args.checkpoint), Path(args.output)
    model, serving = load_checkpoint(checkpoint)
    output.mkdir(parents=True, exist_ok=True)
    source = checkpoint / ENCODER_DIR
    for name in BUNDLE_FILES:
        if name not in (CONFIG_FILE, SERVING_FILE) and (source / name).exists():
            shutil.copy(source / name, output / name)
    labels = [label for head in serving.heads for label in head.labels]
    config = json.loads((source / CONFIG_FILE).read_text(encoding="utf-8"))
    config["id2label"] = {str(i): label for i, label in enumerate(labels)}
    config["label2id"] = {f"{h.name}:{label}": i for i, (h, label) in enumerate((h, x) for h in serving.heads for x in h.labels)}
    (output / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
    export_graph(model, output / MODEL_FILE)

    released = replace(serving, name=args.name or output.name, version=args.version)
    pipeline = pipeline_for(released, TextEncoder.from_file(output / TOKENIZER_FILE), LabelScheme.from_id2label(dict(enumerate(labels))))
    rows = sample_rows(pipeline, list(GOLDEN_TEXTS), 64)
    runners = {"pytorch": torch_runner(model), "onnx_fp32": onnx_runner(output / MODEL_FILE)}
    difference = max_logit_difference(runners["pytorch"], runners["onnx_fp32"], rows)
    print(f"parity: max |logit(PyTorch) - logit(ONNX fp32)| = {difference:.2e} over {len(rows)} windows, {len(serving.heads)} heads")
    if not np.isfinite(difference) or difference > args.tolerance:
        raise ParityError(f"ONNX fp32 differs from PyTorch by {difference:.3e} > {args.tolerance}")
    report: dict[str, Any] = {"parity_max_abs_logit_diff": difference}
    dev = dev_splits(serving.extra.get("train_config") or {})
    if args.quantize == "static":
        fp32 = output / "model.fp32.onnx"
        (output / MODEL_FILE).rename(fp32)
        groups = node_groups(fp32, heads=[h.name for h in serving.heads])
        keep = [n for group in ("attention_scores", "ffn_out") for n in groups[group]]
        texts = {head: [d.text for d in train] for head, (train, _) in dev.items()} or {"golden": list(GOLDEN_TEXTS)}
        seed = int((serving.extra.get("train_config") or {}).get("seed", 13))
        shares = calibration_rows(pipeline, texts, args.calibration_windows, seed)
        report["calibration_windows"] = {name: len(rows) for name, rows in shares.items()}
        print(f"calibration windows: {report['calibration_windows']}")
        calibration = [row for rows in shares.values() for row in rows]
        quantize_static(fp32, output / MODEL_FILE, calibration, exclude=keep, weights="s7")
        runners["onnx_fp32"] = onnx_runner(fp32, n_labels=len(labels))
        runners["onnx_int8"] = onnx_runner(output / MODEL_FILE)
        report["max_abs_logit_diff_int8"] = max_logit_difference(runners["pytorch"], runners["onnx_int8"], rows)
    dev_f1: dict[str, dict[str, float]] = {}
    for head, (_, dev_docs) in dev.items():
        if dev_docs:
            dev_f1[head] = {name: evaluate_documents(dev_docs, pipeline.head(head), run)["micro"]["f1"] for name, run in runners.items()}
            print(f"dev F1 {head}: " + ", ".join(f"{k} {v:.4f}" for k, v in dev_f1[head].items()))
    report["dev_f1"] = dev_f1
    write_golden_answers(output, runners, pipeline, "int8_static_s7" if args.quantize == "static" else "fp32")
    (output / "model.fp32.onnx").unlink(missing_ok=True)
    extra = {**serving.extra, "quantization": args.quantize, "onnx_sha256": file_sha256(output / MODEL_FILE), "export": report}
    if "train_config" in extra:  # paths that mean something on another machine
        extra["train_config"] = {k: portable(v) if k in ("base_model", "output") else v for k, v in extra["train_config"].items()}
    write_serving(output, replace(released, extra=extra))
    print(f"bundle written to {output}: heads {[h.name for h in serving.heads]}, {(output / MODEL_FILE).stat().st_size / 1e6:.1f} MB")
    return 0
