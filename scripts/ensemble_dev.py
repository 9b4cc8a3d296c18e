"""Dev F1 of an ensemble of CRF models, and of each member decoded the same way: what a distilled
student could at best inherit from those teachers (issue #14).

Each member's word-level CRF marginals (forward-backward under its own transitions, whole-text
start constraint, as the service scores) are averaged over the members; the entities are the
BIO-valid path with the largest product of averaged marginals ("marginal path"). Each member
alone is also scored through that decoding and through its own Viterbi path (the service's), so
the ensemble's gain is read against the same decoding. Members must share labels and tokenizer;
the dev split is carved as the first member's training carved it.

    python scripts/ensemble_dev.py --models runs/jnlpba-crf5 runs/jnlpba-crf10 \
        --data ../shared/data/jnlpba/train --out runs/ensemble-dev.json
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.bundle_format import TOKENIZER_FILE, pipeline_for, read_serving
from service.corpora import Document
from service.corpora.load import split_dev
from service.corpora.scoring import score_documents
from service.decoding.aggregate import Decoding, Strategy, entities_from_scores, softmax, word_boundaries
from service.decoding.labels import LabelScheme
from service.decoding.paths import tempered_crf_marginals
from service.decoding.windows import TextEncoder
from train.config import split_seed_of
from train.data import read_all
from train.evaluate_cli import load_runner


def word_marginals(model: Path, docs: Sequence[Document]) -> tuple[list[np.ndarray], LabelScheme, Any, dict[str, Any]]:
    """Per text, ``(words, labels)`` CRF marginals of one model; its scheme, encodings, and its own
    Viterbi scores (as the service decodes it) from the same logits."""
    serving = read_serving(model)
    if serving.transitions is None:
        raise ValueError(f"{model} has no CRF head")
    run, scheme = load_runner(model)
    pipeline = pipeline_for(serving, TextEncoder.from_file(model / TOKENIZER_FILE), scheme)
    plan = pipeline.plan([d.text for d in docs])
    marginals, viterbi = [], []
    for text_logits, text in zip(pipeline.token_logits(plan, pipeline.run(run, plan)), plan.texts):
        starts, _ = word_boundaries(text.encoded.word_ids)
        marginals.append(tempered_crf_marginals(text_logits[starts].astype(np.float64), scheme, serving.transitions, 1.0))
        probs = softmax(text_logits.astype(np.float64))
        args = (text.text, text.encoded.offsets, text.encoded.word_ids, probs, scheme, Strategy.FIRST, Decoding.CRF)
        viterbi.append(entities_from_scores(*args, transitions=serving.transitions))
    return marginals, scheme, plan, summary(score_documents(docs, viterbi)[0])


def decode(docs: Sequence[Document], plan: Any, marginals: Sequence[np.ndarray], scheme: LabelScheme) -> dict[str, Any]:
    """Strict span scores of the best valid path through each text's word marginals."""
    predicted = []
    for text, words in zip(plan.texts, marginals):
        word_ids = text.encoded.word_ids
        starts, _ = word_boundaries(word_ids)
        per_token = words[np.searchsorted(starts, np.arange(len(word_ids)), side="right") - 1] if len(starts) else words
        predicted.append(
            entities_from_scores(text.text, text.encoded.offsets, word_ids, per_token, scheme, Strategy.FIRST, Decoding.CONSTRAINED)
        )
    return summary(score_documents(docs, predicted)[0])


def summary(report: dict[str, Any]) -> dict[str, Any]:
    return {"f1": report["micro"]["f1"], "per_type": {k: v["f1"] for k, v in report["per_type"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="CRF checkpoints or bundles with the same labels")
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=None, help="dev split seed; default: the first member's training run's")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    models = [Path(m) for m in args.models]
    trained = read_serving(models[0]).extra.get("train_config") or {}
    docs = read_all(args.data, None, " ", int(trained.get("join_sentences", 1)))
    docs = split_dev(docs, args.dev_fraction, split_seed_of(trained, args.seed))[1]
    total: list[np.ndarray] = []
    results: dict[str, Any] = {"dev_documents": len(docs), "members": {}}
    first: tuple[LabelScheme, list[int]] | None = None
    for model in models:
        marginals, scheme, plan, own = word_marginals(model, docs)
        words = [len(m) for m in marginals]
        if first is not None and (scheme.labels, words) != (first[0].labels, first[1]):
            raise ValueError(f"{model} tags or splits words unlike {models[0]}: members must share labels and tokenizer")
        first = first or (scheme, words)
        results["members"][str(model)] = {"viterbi": own, "marginal_path": decode(docs, plan, marginals, scheme)}
        print(model, json.dumps(results["members"][str(model)]), flush=True)
        total = marginals if not total else [a + b for a, b in zip(total, marginals)]
    results["ensemble"] = decode(docs, plan, [t / len(args.models) for t in total], scheme)
    print("ensemble", json.dumps(results["ensemble"]))
    Path(args.out).write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
