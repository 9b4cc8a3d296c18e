"""Training-step cost of the CRF head against the plain linear head, side by side on the same batches.

The study's training times come from runs that did not all share the machine the same way; this
measures the ratio directly: the same encoder weights and the same batches, one CE step and one
CRF step alternately, so machine noise hits both alike. Reports ms/step and the CRF/CE ratio.

    python scripts/head_cost.py --base-model "$MINILM" --train ../shared/data/ncbi-disease/train.tsv
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from service.corpora import read_corpus
from service.decoding.labels import LabelScheme
from service.decoding.windows import TextEncoder, WindowConfig
from train.align import LabelPolicy, build_features, label_list
from train.batches import collate, length_grouped_batches
from train.crf import CrfTagger
from train.task import token_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.manual_seed(13)
    torch.set_num_threads(args.threads)
    docs = read_corpus(args.train)
    labels = label_list(docs)
    tokenizer = AutoTokenizer.from_pretrained(args.base_model, use_fast=True)
    encoder = TextEncoder(tokenizer.backend_tokenizer)
    features, _ = build_features(docs, encoder, {k: i for i, k in enumerate(labels)}, WindowConfig(128, 32), LabelPolicy.FIRST)
    batches = length_grouped_batches(features, args.batch_size, np.random.default_rng(13))[: args.steps]
    model = AutoModelForTokenClassification.from_pretrained(args.base_model, num_labels=len(labels))
    tagger = CrfTagger(model, LabelScheme.from_id2label(dict(enumerate(labels))))
    optimizer = torch.optim.AdamW(tagger.parameters(), lr=0.0)  # lr 0: every step sees the same weights
    seconds = {"ce": 0.0, "crf": 0.0}
    model.train()
    for indices in batches:
        batch = collate(features, indices, tokenizer.pad_token_id or 0)
        for head in ("ce", "crf"):
            started = time.perf_counter()
            loss = token_loss(model, batch, None) if head == "ce" else tagger.loss(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            seconds[head] += time.perf_counter() - started
    report = {
        "steps": len(batches),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "ms_per_step": {k: round(1000 * v / len(batches), 1) for k, v in seconds.items()},
        "crf_over_ce": round(seconds["crf"] / seconds["ce"], 3),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
