"""Fit the score temperature at export, and measure what it did: entity-level ECE before and
after, and a reliability diagram (PNG) for the model card.

The temperature is fitted on the dev words' gold labels (first-subword logits of the graph the
bundle ships, so the served scores are the calibrated ones; for a CRF model, under the CRF's
marginals, which are its served scores); ECE is measured on the entities the
service would return for the dev documents, an entity counting as right when its span and type
match a gold one exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from service.corpora import Document
from service.decoding.aggregate import Decoding, softmax
from service.decoding.calibration import (
    Reliability,
    at_bound,
    crf_nll,
    minimise_over_temperature,
    nll,
    reliability,
)
from service.decoding.pipeline import Pipeline, RunBatch

DIAGRAM = "reliability.png"


def calibrate(docs: Sequence[Document], pipeline: Pipeline, run: RunBatch, out_dir: Path) -> dict[str, Any]:
    """The fitted temperature and its effect; writes ``reliability.png`` into ``out_dir``."""
    from train.align import AlignStats, word_labels

    label2id = {label: i for i, label in enumerate(pipeline.scheme.labels)}
    if label2id.get("O") != 0:
        raise ValueError("calibration expects 'O' to be label 0")
    plan = pipeline.plan([d.text for d in docs])
    window_logits = pipeline.run(run, plan)
    words, gold = [], []
    for doc, text, lg in zip(docs, plan.texts, pipeline.token_logits(plan, window_logits)):
        if not len(text.encoded):
            continue
        starts, _, labels = word_labels(doc, text.encoded, label2id, AlignStats())
        words.append(lg[starts])
        gold.append(labels)
    word_logits, gold_ids = np.concatenate(words), np.concatenate(gold)
    transitions = pipeline.heads[0].transitions if pipeline.defaults.decoding is Decoding.CRF else None
    if transitions is None:
        loss = functools.partial(nll, word_logits, gold_ids)
    else:  # the served scores are CRF marginals: fit the tempered CRF on the same words
        emissions = [np.log(np.maximum(softmax(w), 1e-12)) for w in words]
        loss = functools.partial(crf_nll, emissions, gold, pipeline.scheme, transitions)
    temperature = minimise_over_temperature(loss)
    curves = {}
    per_type: dict[str, dict[str, float]] = {}
    for name, t in (("before", 1.0), ("after", temperature)):
        scores: list[float] = []
        correct: list[bool] = []
        kinds: list[str] = []
        for doc, found in zip(docs, pipeline.with_temperature(t).finish(plan, window_logits)):
            truth = {(s.start, s.end, s.label) for s in doc.spans}
            scores.extend(e.score for e in found)
            correct.extend((e.start, e.end, e.label) in truth for e in found)
            kinds.extend(e.label for e in found)
        curves[name] = reliability(scores, correct)
        for kind in sorted(set(kinds)):
            mine = [i for i, k in enumerate(kinds) if k == kind]
            ece = reliability([scores[i] for i in mine], [correct[i] for i in mine]).ece
            per_type.setdefault(kind, {"entities": len(mine)})[f"ece_{name}"] = ece
    plot_reliability(curves, temperature, out_dir / DIAGRAM)
    return {
        "temperature": temperature,
        "at_search_bound": at_bound(temperature),
        "words": int(len(gold_ids)),
        "entities": int(sum(curves["before"].counts)),
        "fitted_on": "word marginals of the CRF" if transitions is not None else "word softmax",
        "nll_before": loss(1.0),
        "nll_after": loss(temperature),
        "ece_before": curves["before"].ece,
        "ece_after": curves["after"].ece,
        "per_type": per_type,
        "bins": {name: {"confidence": c.confidence, "accuracy": c.accuracy, "counts": c.counts} for name, c in curves.items()},
        "diagram": DIAGRAM,
    }


def plot_reliability(curves: dict[str, Reliability], temperature: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    for ax, (name, curve) in zip(axes, curves.items()):
        edges = np.asarray(curve.edges)
        centres, width = (edges[:-1] + edges[1:]) / 2, edges[1] - edges[0]
        filled = np.asarray(curve.counts) > 0
        ax.bar(centres[filled], np.asarray(curve.accuracy)[filled], width=width * 0.9, color="#4c72b0", label="share correct")
        ax.plot([0, 1], [0, 1], color="#888888", linestyle="--", label="perfect calibration")
        ax.plot(centres[filled], np.asarray(curve.confidence)[filled], "o", color="#dd8452", label="mean score in the bin")
        title = "raw scores" if name == "before" else f"temperature {temperature:.2f}"
        ax.set_title(f"{title}: ECE {curve.ece:.3f}")
        ax.set_xlabel("entity score")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    axes[0].set_ylabel("entities whose span and type are right")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
