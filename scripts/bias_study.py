"""Can a decoding bias buy F1 on a CRF bundle (issue #14)? Two studies on the bundle's dev split,
from one inference pass: only the CRF scores change between decodings.

- **O bias**: ``b`` added to every word labelled ``O`` (through the transitions into ``O`` and the
  start score of ``O``, so the bundle format carries it unchanged), swept over a grid; F1 on all
  of dev and on each half (even and odd documents).
- **A bias per entity type**: ``b_X`` added to every word labelled ``B-X`` or ``I-X``, fitted by
  coordinate search on one half of dev and scored on the other half, both ways round. A gain that
  does not survive the held-out half is dev noise, not a lever.

    python scripts/bias_study.py --model models/bioner-minilm-jnlpba --data ../shared/data/jnlpba/train \
        --out docs/measured/jnlpba-bias-dev.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from service.bundle_format import TOKENIZER_FILE, pipeline_for, read_serving
from service.corpora.load import split_dev
from service.corpora.scoring import span_scores
from service.decoding.crf import Transitions
from service.decoding.labels import LabelScheme
from service.decoding.windows import TextEncoder
from train.config import split_seed_of
from train.data import read_all
from train.evaluate_cli import load_runner

O_GRID = [-0.4, -0.2, 0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
TYPE_GRID = [-0.3, -0.15, 0.0, 0.15, 0.3]


def biased(transitions: Transitions, scheme: LabelScheme, per_label: Mapping[str, float]) -> Transitions:
    """``per_label[type]`` added to every word whose label has that type (``""`` is O): a bias on
    a word's own label is a bias on every move into it and on the opening into it."""
    matrix, start = transitions.matrix.copy(), transitions.start.copy()
    for j, kind in enumerate(scheme.types):
        matrix[:, j] += per_label.get(kind, 0.0)
        start[j] += per_label.get(kind, 0.0)
    return Transitions(matrix, start, transitions.end.copy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a bundle with CRF transition scores")
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--dev-fraction", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    serving = read_serving(args.model)
    transitions = serving.transitions
    if transitions is None:
        raise SystemExit(f"{args.model} has no CRF transition scores")
    docs = read_all(args.data, None, " ")
    _, docs = split_dev(docs, args.dev_fraction, split_seed_of(serving.extra.get("train_config") or {}, None))
    run, scheme = load_runner(args.model)
    encoder = TextEncoder.from_file(args.model / TOKENIZER_FILE)
    base = pipeline_for(serving, encoder, scheme)
    halves = {"even": list(range(0, len(docs), 2)), "odd": list(range(1, len(docs), 2))}
    plans = {name: base.plan([docs[i].text for i in idx]) for name, idx in halves.items()}
    logits = {name: base.run(run, plan) for name, plan in plans.items()}

    def score(half: str, per_label: Mapping[str, float]) -> dict[str, float]:
        """Micro P/R/F1 of ``half`` (all: both halves' answers together) under the bias."""
        pipe = pipeline_for(dataclasses.replace(serving, transitions=biased(transitions, scheme, per_label)), encoder, scheme)
        parts = ["even", "odd"] if half == "all" else [half]
        found, gold = [], []
        for part in parts:
            found += [[(e.start, e.end, e.label) for e in ents] for ents in pipe.finish(plans[part], logits[part])]
            gold += [[(s.start, s.end, s.label) for s in docs[i].spans] for i in halves[part]]
        micro = span_scores(gold, found)["micro"]
        return {k: round(float(micro[k]), 4) for k in ("precision", "recall", "f1")}

    o_rows = [{"o_bias": b, **{half: score(half, {"": b}) for half in ("all", "even", "odd")}} for b in O_GRID]
    for row in o_rows:
        print(json.dumps(row), flush=True)
    type_rows: list[dict[str, Any]] = []
    for fit, held in (("even", "odd"), ("odd", "even")):
        bias = dict.fromkeys(scheme.entity_types, 0.0)
        best = score(fit, bias)["f1"]
        for _ in range(2):  # two sweeps of coordinate search
            for kind in scheme.entity_types:
                for value in TYPE_GRID:
                    trial = {**bias, kind: value}
                    if (f1 := score(fit, trial)["f1"]) > best + 1e-9:
                        best, bias = f1, trial
        row = {
            "fitted_on": fit,
            "bias": bias,
            "fitted_half_f1": {"unbiased": score(fit, {})["f1"], "biased": best},
            "held_out_half_f1": {"unbiased": score(held, {})["f1"], "biased": score(held, bias)["f1"]},
        }
        print(json.dumps(row), flush=True)
        type_rows.append(row)
    held_gain = float(np.mean([r["held_out_half_f1"]["biased"] - r["held_out_half_f1"]["unbiased"] for r in type_rows]))
    report = {
        "model": str(args.model),
        "documents": len(docs),
        "o_bias": o_rows,
        "type_bias": type_rows,
        "type_bias_mean_held_out_gain": round(held_gain, 4),
    }
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
