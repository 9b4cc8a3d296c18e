"""``bioner evaluate``: a PyTorch checkpoint or an ONNX bundle, scored through the service's decoding."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.bundle_format import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, pipeline_for, read_serving
from service.corpora.columns import parse_tag_map
from service.corpora.load import split_dev
from service.corpora.scoring import format_table
from service.decoding.aggregate import Decoding, Strategy
from service.decoding.consistency import Consistency
from service.decoding.labels import LabelScheme
from service.decoding.pipeline import RunBatch
from service.decoding.windows import Align, TextEncoder
from train.config import split_seed_of
from train.data import read_all
from train.evaluate import evaluate_documents


def load_runner(model_dir: Path) -> tuple[RunBatch, LabelScheme]:
    config = json.loads((model_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    scheme = LabelScheme.from_id2label(config["id2label"])
    if (model_dir / MODEL_FILE).exists():  # an ONNX bundle: scored without importing torch
        from train.backends import onnx_runner

        return onnx_runner(model_dir / MODEL_FILE), scheme
    from transformers import AutoModelForTokenClassification

    from train.backends import torch_runner

    return torch_runner(AutoModelForTokenClassification.from_pretrained(model_dir)), scheme


def run_evaluate(args: argparse.Namespace) -> int:
    model_dir = Path(args.model)
    serving = read_serving(model_dir)
    docs = read_all(args.data, parse_tag_map(args.tag_map), args.separator, args.join_sentences)
    if args.dev_fraction:
        _, docs = split_dev(docs, args.dev_fraction, split_seed_of(serving.extra.get("train_config") or {}, args.seed))
    run, scheme = load_runner(model_dir)
    try:
        pipeline = pipeline_for(
            serving,
            TextEncoder.from_file(model_dir / TOKENIZER_FILE),
            scheme,
            max_length=args.max_length,
            stride=args.stride,
            align=Align(args.window_align) if args.window_align else None,
            strategy=Strategy(args.strategy) if args.strategy else None,
            decoding=Decoding(args.decoding) if args.decoding else None,
            consistency=Consistency(args.consistency) if args.consistency else None,
        )
    except ValueError as exc:
        raise SystemExit(f"bioner evaluate: {exc}") from None
    report = evaluate_documents(docs, pipeline, run, types=args.types)
    window, defaults = pipeline.window, pipeline.defaults
    report["settings"] = {
        "model": str(model_dir),
        "documents": len(docs),
        "max_length": window.max_length,
        "stride": window.stride,
        "window_align": window.align.value,
        "strategy": defaults.strategy.value,
        "decoding": defaults.decoding.value,
        "consistency": defaults.consistency.value,
        "types": args.types or "all",
    }
    print(format_table(report))
    if "seqeval" in report:
        print(
            f"seqeval strict IOB2 micro F1: {report['seqeval']['report']['micro avg']['f1-score']:.4f}, "  # type: ignore[index]
            f"token accuracy: {report['seqeval']['token_accuracy']:.4f}"
        )  # type: ignore[index]
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0
