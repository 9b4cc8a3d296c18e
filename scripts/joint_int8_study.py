"""int8 recipes for a multi-head checkpoint: each head's dev F1 under several calibrations and fp32 groups.

The joint model's heads were trained on different text, so one calibration sample and one set
of fp32 nodes may suit some heads and not others. Each variant is ``CALIBRATION:GROUPS``:
``first256`` (the first windows in corpus order, the 0.2.0 export) or ``shares256`` (equal shares
per corpus, the export since 0.3.0), and ``+``-joined node groups kept in fp32
(``train.quantize.NODE_GROUPS`` names; ``classifier`` is the per-corpus heads).

    python scripts/joint_int8_study.py --checkpoint runs/joint2/joint \
        --variants shares256:attention_scores+ffn_out shares256:attention_scores+ffn_out+ffn_in
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from pathlib import Path

from service.bundle_format import TOKENIZER_FILE, pipeline_for
from service.decoding.labels import LabelScheme
from service.decoding.windows import TextEncoder
from train.backends import onnx_runner
from train.evaluate import evaluate_documents
from train.export import sample_rows
from train.export_joint import calibration_rows, dev_splits, export_graph
from train.joint import ENCODER_DIR, load_checkpoint
from train.quantize import node_groups, quantize_static


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="train-joint output folder")
    parser.add_argument("--variants", nargs="+", required=True, help="CALIBRATION:GROUPS, e.g. shares256:attention_scores+ffn_out")
    args = parser.parse_args()
    model, serving = load_checkpoint(args.checkpoint)
    work = Path(tempfile.mkdtemp(prefix="joint-int8-"))
    fp32 = work / "fp32.onnx"
    export_graph(model, fp32)
    labels = [label for head in serving.heads for label in head.labels]
    encoder = TextEncoder.from_file(args.checkpoint / ENCODER_DIR / TOKENIZER_FILE)
    pipeline = pipeline_for(serving, encoder, LabelScheme.from_id2label(dict(enumerate(labels))))
    dev = dev_splits(serving.extra["train_config"])
    texts = {head: [d.text for d in train] for head, (train, _) in dev.items()}
    groups = node_groups(fp32, heads=[h.name for h in serving.heads])
    groups["heads"] = groups["classifier"]  # the name the README's study rows use

    def scores(path: Path) -> dict[str, float]:
        run = onnx_runner(path, n_labels=len(labels))
        return {head: round(evaluate_documents(docs, pipeline.head(head), run)["micro"]["f1"], 4) for head, (_, docs) in dev.items()}

    print("fp32", json.dumps(scores(fp32)), flush=True)
    for variant in args.variants:
        calibration, kept = variant.split(":")
        size = int(re.sub(r"\D", "", calibration))
        if calibration.startswith("first"):
            rows = sample_rows(pipeline, [t for head in texts for t in texts[head]], size)
        else:
            rows = [row for share in calibration_rows(pipeline, texts, size, seed=13).values() for row in share]
        out = work / f"{len(list(work.iterdir()))}.onnx"
        quantize_static(fp32, out, rows, exclude=[n for group in kept.split("+") for n in groups[group]], weights="s7")
        print(variant, json.dumps(scores(out)), f"{out.stat().st_size / 1e6:.1f} MB", flush=True)


if __name__ == "__main__":
    main()
