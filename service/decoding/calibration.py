"""Temperature scaling of a bundle's probabilities, and entity-level calibration error.

One temperature ``T`` divides every logit before the softmax. It is fitted at export by
minimising the negative log-likelihood of the dev words' gold labels, so an entity's score
becomes a probability that means what it says: of the entities scored 0.8, about 80% are right.
Decoding still uses the raw probabilities, so a temperature never moves a span.

A CRF model's scores are its marginals; there ``T`` divides the emissions and the transition
scores alike, which tempers the whole sequence distribution and leaves the Viterbi path as it
was. It is fitted on the NLL of the dev words' gold labels under those marginals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.decoding.aggregate import softmax
from service.decoding.crf import Transitions
from service.decoding.labels import LabelScheme
from service.decoding.paths import tempered_crf_marginals


def nll(logits: np.ndarray, gold: np.ndarray, temperature: float) -> float:
    """Mean negative log-likelihood of ``gold`` label ids under ``softmax(logits / T)``."""
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=-1, keepdims=True)
    log_z = np.log(np.exp(scaled).sum(axis=-1))
    return float((log_z - scaled[np.arange(len(gold)), gold]).mean())


def minimise_over_temperature(loss: Callable[[float], float], low: float = 0.25, high: float = 8.0, steps: int = 40) -> float:
    """A coarse log-spaced grid, then golden-section search between the best point's neighbours.

    The softmax NLL is convex in 1/T; the CRF marginals' NLL need not be unimodal, so the grid
    picks the basin before the search narrows it.
    """
    grid = np.geomspace(low, high, 13)
    best = int(np.argmin([loss(float(t)) for t in grid]))
    a, b = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(math.exp(c)), loss(math.exp(d))
    for _ in range(steps):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(math.exp(d))
    return math.exp((a + b) / 2)


def crf_nll(
    words: Sequence[np.ndarray], gold: Sequence[np.ndarray], scheme: LabelScheme, transitions: Transitions, temperature: float
) -> float:
    """Mean negative log of the tempered CRF's marginal probability of each gold word label.

    ``words`` are the texts' per-word log-probabilities (the emissions the service decodes).
    The marginals are what a CRF model serves as scores, so this is the NLL the scores incur;
    a gold label the constraints forbid (a stray I- tag) counts at the floor, not as infinity.
    """
    total, count = 0.0, 0
    for scores, labels in zip(words, gold):
        if not len(labels):
            continue
        marginals = tempered_crf_marginals(scores, scheme, transitions, temperature)
        total -= float(np.log(np.maximum(marginals[np.arange(len(labels)), labels], 1e-9)).sum())
        count += len(labels)
    return total / max(count, 1)


def at_bound(temperature: float, low: float = 0.25, high: float = 8.0) -> bool:
    """The fit ran into the search range's edge: the true optimum may lie beyond it."""
    return min(abs(temperature - low), abs(temperature - high)) < 1e-3 * temperature


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: mean confidence, accuracy and count; ``ece`` weights the gaps by count."""

    edges: tuple[float, ...]
    confidence: tuple[float, ...]
    accuracy: tuple[float, ...]
    counts: tuple[int, ...]
    ece: float


def reliability(scores: Sequence[float], correct: Sequence[bool], bins: int = 10) -> Reliability:
    """Expected calibration error over equal-width bins of the entity scores."""
    s, ok = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(s, edges[1:-1], right=True), 0, bins - 1)
    conf, acc, counts = [], [], []
    ece = 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        counts.append(n)
        conf.append(float(s[mask].mean()) if n else 0.0)
        acc.append(float(ok[mask].mean()) if n else 0.0)
        ece += abs(acc[-1] - conf[-1]) * n / max(len(s), 1)
    return Reliability(tuple(float(e) for e in edges), tuple(conf), tuple(acc), tuple(counts), float(ece))


def calibrated_probs(logits: np.ndarray, temperature: float) -> np.ndarray | None:
    """Temperature-scaled probabilities, or None when ``T`` is 1 (the raw ones serve)."""
    return None if temperature == 1.0 else softmax(logits / temperature)
