"""Cost-sensitive class weights for the dominant ``O`` tag.

- ``welt`` (Mobasher et al.): per tag group c in {O, B, I}, ``CW_c = 1 - n_c / n_total``; the
  three values go through a softmax and every label gets its group's weight.
- ``ens`` (effective number of samples, Cui et al.): ``(1 - beta) / (1 - beta ** n_c)`` per label,
  normalised to sum to the number of labels.

Counts are taken from the training labels actually used (after cleaning and alignment).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from service.decoding.labels import BEGIN, END, INSIDE, OUTSIDE, SINGLE, split_label


def label_counts(label_rows: Sequence[np.ndarray], n_labels: int, ignore: int = -100) -> np.ndarray:
    counts = np.zeros(n_labels, dtype=np.int64)
    for row in label_rows:
        kept = row[row != ignore]
        counts += np.bincount(kept, minlength=n_labels)[:n_labels]
    return counts


def _group(label: str) -> str:
    prefix, _ = split_label(label)
    if prefix == OUTSIDE:
        return "O"
    return "B" if prefix in (BEGIN, SINGLE) else "I" if prefix in (INSIDE, END) else "I"


def welt_weights(labels: Sequence[str], counts: np.ndarray) -> np.ndarray:
    groups = [_group(label) for label in labels]
    total = counts.sum()
    names = ["O", "B", "I"]
    cw = np.array([1.0 - counts[[g == name for g in groups]].sum() / total for name in names])
    soft = np.exp(cw - cw.max())
    soft /= soft.sum()
    by_group = dict(zip(names, soft))
    return np.array([by_group[g] for g in groups], dtype=np.float64)


def ens_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    if not 0.0 <= beta < 1.0:
        raise ValueError("beta must be in [0, 1)")
    effective = 1.0 - np.power(beta, np.maximum(counts, 1).astype(np.float64))
    weights = (1.0 - beta) / effective
    return weights / weights.sum() * len(counts)


def class_weights(kind: str, labels: Sequence[str], counts: np.ndarray, beta: float = 0.99) -> np.ndarray | None:
    """``None`` for plain cross-entropy."""
    if kind == "ce":
        return None
    if kind == "welt":
        return welt_weights(labels, counts)
    if kind == "ens":
        return ens_weights(counts, beta)
    raise ValueError(f"unknown loss {kind!r}")
