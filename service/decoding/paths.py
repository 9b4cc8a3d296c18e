"""Label sequences under transition constraints: the best path (Viterbi) and each word's marginal
probability (forward-backward), for many texts at once.

The recursions step over words, so their cost is one small numpy call after another, per word:
alone, a 280-word abstract costs a few milliseconds of Python. Together, a batch of texts takes
the steps of its longest text, each on all the texts still inside their words.

A text's answer never depends on its batch-mates: the best path uses additions and maxima only
(exact on every CPU), and each marginal step is numpy's stacked ``matmul``, which computes every
text's ``(1, L) @ (L, L)`` product on its own, the same way whatever the batch holds (a single
``(texts, L) @ (L, L)`` product would let BLAS sum a row in another order depending on how many
rows came with it). The tests hold it bit for bit: float64 and float32, 5 and 11 labels, texts
alone, reversed and shuffled. Across CPUs the paths are identical; marginals may differ in the
last bits where BLAS kernels differ, as any matrix product does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import cast

import numpy as np

from service.decoding.crf import Transitions
from service.decoding.labels import BEGIN, END, INSIDE, LabelScheme


@functools.lru_cache(maxsize=64)
def allowed_transitions(scheme: LabelScheme) -> tuple[np.ndarray, np.ndarray]:
    """``(allowed[prev, cur], allowed_at_start[cur])`` for schemes that have B- labels.

    ``I-X`` and ``E-X`` may only follow ``B-X`` or ``I-X``; in an IO scheme (no B- labels)
    every move is allowed. Cached per scheme (a model has a handful): the arrays are read-only.
    """
    n = len(scheme)
    allowed = np.ones((n, n), dtype=bool)
    start = np.ones(n, dtype=bool)
    constrained = BEGIN in scheme.prefixes
    for cur in range(n):
        if constrained and scheme.prefixes[cur] in (INSIDE, END):
            kind = scheme.types[cur]
            ok = [p for p in range(n) if scheme.types[p] == kind and scheme.prefixes[p] in (BEGIN, INSIDE)]
            allowed[:, cur] = False
            allowed[ok, cur] = True
            start[cur] = False
    allowed.flags.writeable = start.flags.writeable = False
    return allowed, start


# Words between rescalings of the recursions. A word's step can shrink a sum by its best allowed
# move times its emission; four such factors stay far inside float64's range for any scores a
# model produces, and a text that underflows all the same is redone rescaling every word.
RESCALE_EVERY = 4
BLOCK_WORDS = 512  # the (texts, words, L, L) step matrices are built this many words at a time: an abstract in one block


def _forward_backward(
    emit: np.ndarray, lengths: np.ndarray, moves: np.ndarray, first: np.ndarray, last: np.ndarray, every: int
) -> np.ndarray:
    """Unnormalised ``alpha * beta`` for stacked, length-sorted texts; ``(B, W_max, L)``.

    A word's step is one matrix, "move, then emit this word" (``moves`` scaled by the word's
    emissions, per text), so each direction takes one stacked ``matmul`` per word. Sums are
    rescaled at every ``every``-th word position; the scales cancel in each word's marginal.
    """
    width = emit.shape[1]
    live = _live(lengths, width)
    alpha = np.ones(emit.shape, dtype=np.float64)  # padding stays finite
    beta = np.ones(emit.shape, dtype=np.float64)
    opening = first * emit[:, 0]
    alpha[:, 0] = opening / opening.sum(axis=1, keepdims=True)
    beta[np.arange(len(lengths)), lengths - 1] = last
    blocks = [(low, min(width, low + BLOCK_WORDS)) for low in range(1, width, BLOCK_WORDS)]
    steps = np.empty(0)
    for low, high in blocks:
        steps = moves * emit[: live[low], low:high, None, :]  # (text, word, prev, cur)
        for t in range(low, high):
            k = live[t]
            np.matmul(alpha[:k, t - 1 : t], steps[:k, t - low], out=alpha[:k, t : t + 1])
            if t % every == 0:
                alpha[:k, t] /= alpha[:k, t].sum(axis=1, keepdims=True)
    column = beta[..., None]
    for low, high in reversed(blocks):
        if (low, high) != blocks[-1]:  # the last block's steps are still there from the forward pass
            steps = moves * emit[: live[low], low:high, None, :]
        for t in range(high - 1, low - 1, -1):  # beta at word t - 1, for the texts with a word t
            k = live[t]
            np.matmul(steps[:k, t - low], column[:k, t], out=column[:k, t - 1])
            if (t - 1) % every == 0:
                beta[:k, t - 1] /= beta[:k, t - 1].sum(axis=1, keepdims=True)
    return alpha * beta


def _stacked(scores: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Zero-padded ``(B, W_max, L)`` scores, longest text first; their word counts, and each
    text's row. In that order the texts still inside their words at any step are a prefix of
    the rows, so every step works on a slice and no finished text needs masking."""
    lengths = np.array([s.shape[0] for s in scores], dtype=np.int64)
    if not len(scores) or lengths.min() < 1:
        raise ValueError("every text to decode needs at least one word")
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros((len(scores), int(lengths.max()), scores[0].shape[1]), dtype=np.result_type(*scores))
    for row, i in zip(out, order):
        row[: lengths[i]] = scores[i]
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return out, lengths[order], rank


def _live(lengths: np.ndarray, width: int) -> list[int]:
    """``live[t]``: how many of the (descending) texts have a word ``t``."""
    return [int(k) for k in np.searchsorted(-lengths, -np.arange(width), side="left")]


def viterbi_many(
    scores: Sequence[np.ndarray], allowed: np.ndarray, start: np.ndarray, transitions: Transitions | None = None
) -> list[np.ndarray]:
    """Each text's best label sequence under hard transition constraints; ``(W_i, L)`` -> ``(W_i,)``.

    ``scores`` are per-word log-probabilities (or emissions); ``transitions`` adds learned CRF
    scores for each move, for the first label and for the last one. Additions and maxima only,
    so the paths are exact on every CPU.
    """
    padded, lengths, rank = _stacked(scores)
    width = padded.shape[1]
    live = _live(lengths, width)
    penalty = np.where(allowed, 0.0, -np.inf)
    score = padded[:, 0] + np.where(start, 0.0, -np.inf)
    if transitions is not None:
        penalty = penalty + transitions.matrix
        score = score + transitions.start
    back = np.zeros(padded.shape, dtype=np.int64)
    for t in range(1, width):
        k = live[t]  # a finished text keeps the scores of its last word
        candidates = score[:k, :, None] + penalty  # (text, prev, cur)
        back[:k, t] = candidates.argmax(axis=1)
        score[:k] = candidates.max(axis=1) + padded[:k, t]
    if transitions is not None:
        score = score + transitions.end
    best = cast("list[int]", score.argmax(axis=1).tolist())
    counts = cast("list[int]", lengths.tolist())
    paths = []
    for i, (n, node) in enumerate(zip(counts, best)):
        pointer = cast("list[list[int]]", back[i, :n].tolist())  # the walk back: Python ints beat a numpy call per word
        path = [0] * n
        path[n - 1] = node
        for t in range(n - 1, 0, -1):
            node = pointer[t][node]
            path[t - 1] = node
        paths.append(np.array(path, dtype=np.int64))
    return [paths[r] for r in rank]


def crf_marginals_many(scores: Sequence[np.ndarray], allowed: np.ndarray, start: np.ndarray, transitions: Transitions) -> list[np.ndarray]:
    """``p(label of word t = j | text)`` under the CRF (forward-backward); ``(W_i, L)``, rows sum to 1.

    A CRF's per-word emission softmax is not a probability of the decoded label; these marginals
    are, so a CRF model's entity scores mean what every other model's do. The recursions run in
    probability space (a product per word instead of a log-sum-exp over a matrix), rescaled as
    they go: the scales cancel in each word's marginal.
    """
    padded, lengths, rank = _stacked(scores)
    allowed_scores = transitions.matrix[allowed]
    moves = np.where(allowed, np.exp(transitions.matrix - allowed_scores.max()), 0.0)  # (prev, cur)
    emit = np.exp(padded - padded.max(axis=2, keepdims=True), dtype=np.float64)
    first = np.where(start, np.exp(transitions.start - transitions.start[start].max()), 0.0)
    last = np.exp(transitions.end - transitions.end.max())
    with np.errstate(divide="ignore", invalid="ignore", under="ignore"):  # an underflow is caught below
        joint = _forward_backward(emit, lengths, moves, first, last, RESCALE_EVERY)
    totals = joint.sum(axis=2)
    failed = ~(np.isfinite(totals) & (totals > 0)).all(axis=1)
    if failed.any():  # underflow between rescalings: those texts again, rescaled at every word (alone, too)
        joint[failed] = _forward_backward(emit[failed], lengths[failed], moves, first, last, 1)
    marginals = np.clip(joint / joint.sum(axis=2, keepdims=True), 0.0, 1.0)
    return [marginals[r, : lengths[r]].copy() for r in rank]  # copies: no answer keeps the batch's buffer alive


def tempered_crf_marginals_many(
    log_probs: Sequence[np.ndarray], scheme: LabelScheme, transitions: Transitions, temperature: float
) -> list[np.ndarray]:
    """Marginals of the CRF whose whole score (emissions and transitions) is divided by ``T``.

    ``log_probs`` may be log-softmaxed: a constant per word cancels in the normaliser at any ``T``.
    Dividing every path's score by ``T`` leaves the best path where it was, so a fitted ``T``
    moves the scores and never the spans.
    """
    allowed, start = allowed_transitions(scheme)
    return crf_marginals_many([s / temperature for s in log_probs], allowed, start, transitions.tempered(temperature))


def viterbi(scores: np.ndarray, allowed: np.ndarray, start: np.ndarray, transitions: Transitions | None = None) -> np.ndarray:
    """One text's best path (``viterbi_many`` of one)."""
    return viterbi_many([scores], allowed, start, transitions)[0]


def crf_marginals(scores: np.ndarray, allowed: np.ndarray, start: np.ndarray, transitions: Transitions) -> np.ndarray:
    """One text's marginals (``crf_marginals_many`` of one)."""
    return crf_marginals_many([scores], allowed, start, transitions)[0]


def tempered_crf_marginals(log_probs: np.ndarray, scheme: LabelScheme, transitions: Transitions, temperature: float) -> np.ndarray:
    """One text's tempered marginals (``tempered_crf_marginals_many`` of one)."""
    return tempered_crf_marginals_many([log_probs], scheme, transitions, temperature)[0]
