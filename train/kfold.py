"""k-fold cross-validation: K models on document-level folds, F1 per type as mean ± standard deviation.

Folds are cut over the reader's documents with the run's seed (for column files a document is a
sentence: the format marks nothing larger). Each fold trains with the others as training data and
scores itself as dev, exactly as a single ``train`` run scores its dev split. The standard
deviation is the sample one (ddof=1), as the published per-fold tables report it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from train.config import TrainConfig
from train.data import fold_splits, read_all, subsample
from train.finetune import train


def summarise(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation of P/R/F1, micro and per type, over fold dev reports."""

    def stats(values: list[float]) -> dict[str, float]:
        arr = np.asarray(values, dtype=np.float64)
        return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0}

    kinds = sorted({k for r in reports for k in r["per_type"]})
    return {
        "folds": len(reports),
        "micro": {m: stats([r["micro"][m] for r in reports]) for m in ("precision", "recall", "f1")},
        "per_type": {
            kind: {m: stats([r["per_type"].get(kind, {}).get(m, 0.0) for r in reports]) for m in ("precision", "recall", "f1")}
            for kind in kinds
        },
        "f1_by_fold": [r["micro"]["f1"] for r in reports],
    }


def format_summary(summary: dict[str, Any]) -> str:
    rows = [("micro", summary["micro"]), *summary["per_type"].items()]
    lines = [f"{'type':<16} {'P':>15} {'R':>15} {'F1':>15}   ({summary['folds']} folds, mean ± sd)"]
    for name, prf in rows:
        cells = " ".join(f"{prf[m]['mean']:.4f} ± {prf[m]['std']:.4f}".rjust(15) for m in ("precision", "recall", "f1"))
        lines.append(f"{name:<16} {cells}")
    return "\n".join(lines)


def cross_validate(config: TrainConfig, folds: int, *, resume: bool = False) -> dict[str, Any]:
    """``folds`` models, fold ``n`` in ``output/fold-n``; ``resume`` skips finished folds and resumes the interrupted one."""
    if config.dev:
        raise ValueError("--folds cuts dev folds from --train; do not pass --dev")
    docs = read_all(config.train, config.tag_map, config.separator, config.join_sentences)
    out = Path(config.output)
    reports = []
    for n, (train_docs, dev_docs) in enumerate(fold_splits(docs, folds, config.split_seed), 1):
        print(f"fold {n}/{folds}: {len(train_docs)} train / {len(dev_docs)} dev documents")
        fold_config = replace(config, output=str(out / f"fold-{n}"))
        best = train(fold_config, docs=(subsample(train_docs, config.train_fraction, config.seed), dev_docs), resume=resume)
        reports.append(best["dev"])
    summary = summarise(reports)
    (out / "kfold.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(format_summary(summary))
    return summary
