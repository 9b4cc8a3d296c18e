"""``bioner evaluate``: a PyTorch checkpoint or an ONNX bundle, scored through the service's decoding."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from service.corpora import read_corpus
from service.corpora.columns import parse_tag_map
from service.corpora.load import split_dev
from service.corpora.scoring import format_table
from service.decoding.aggregate import Decoding, Strategy
from service.decoding.labels import LabelScheme
from service.decoding.predict import RunBatch, WindowConfig
from service.decoding.windows import TextEncoder
from service.runtime.bundle import read_serving
from train.evaluate import evaluate_documents


def load_runner(model_dir: Path) -> tuple[RunBatch, LabelScheme]:
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    scheme = LabelScheme.from_id2label(config["id2label"])
    if (model_dir / "model.onnx").exists():
        from train.backends import onnx_runner

        return onnx_runner(model_dir / "model.onnx"), scheme
    from transformers import AutoModelForTokenClassification

    from train.backends import torch_runner

    return torch_runner(AutoModelForTokenClassification.from_pretrained(model_dir)), scheme


def run_evaluate(args: argparse.Namespace) -> int:
    model_dir = Path(args.model)
    serving = read_serving(model_dir)
    window = WindowConfig(args.max_length or serving.max_length, args.stride if args.stride is not None else serving.stride)
    strategy = Strategy(args.strategy or serving.strategy)
    docs = [d for p in args.data for d in read_corpus(p, parse_tag_map(args.tag_map), args.separator)]
    if args.dev_fraction:
        _, docs = split_dev(docs, args.dev_fraction, args.seed)
    run, scheme = load_runner(model_dir)
    encoder = TextEncoder.from_file(model_dir / "tokenizer.json")
    decoding = Decoding(args.decoding or serving.decoding)
    if decoding is Decoding.CRF and serving.transitions is None:
        raise SystemExit(f"bioner evaluate: decoding 'crf' needs a model trained with --head crf; {model_dir} has no CRF scores")
    report = evaluate_documents(
        docs, encoder, run, scheme, window, strategy, decoding=decoding, transitions=serving.transitions, types=args.types
    )
    report["settings"] = {
        "model": str(model_dir),
        "documents": len(docs),
        "max_length": window.max_length,
        "stride": window.stride,
        "strategy": strategy.value,
        "decoding": decoding.value,
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
