"""Subword scores -> word labels -> entity spans with exact character offsets.

Words are the tokenizer's pre-tokenizer words (``word_ids``), never a split on spaces, so texts
without spaces (Chinese) and punctuation-heavy names (``IL-2``) decode the same way.

Score of an entity: the mean, over its words, of the probability of the label chosen for that
word (after subword aggregation); under CRF decoding, of the CRF's marginal probability of it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np

from service.decoding.crf import Transitions
from service.decoding.labels import BEGIN, END, INSIDE, OUTSIDE, SINGLE, LabelScheme


class Decoding(str, Enum):
    """How word labels are chosen from word probabilities."""

    GREEDY = "greedy"  # arg-max per word, then the tolerant decoder repairs stray I- tags
    CONSTRAINED = "constrained"  # most probable tag sequence with no I-X except after B-X/I-X (Viterbi)
    CRF = "crf"  # as constrained, plus the bundle's learned CRF transition scores


class Strategy(str, Enum):
    """How subword scores become one word's scores (as in the transformers pipeline)."""

    FIRST = "first"  # the first subword speaks for the word
    AVERAGE = "average"  # mean of the subwords' probability vectors
    MAX = "max"  # the subword with the most confident label speaks for the word


@dataclass(frozen=True)
class Entity:
    start: int
    end: int
    label: str
    score: float
    text: str
    alternatives: tuple[tuple[str, float], ...] = ()  # other types with their probability, best first
    source: str = ""  # the head (corpus) that found it, in a multi-head bundle


@dataclass(frozen=True)
class Words:
    """Word-level view of a text: per word the token range and the aggregated probabilities."""

    token_start: np.ndarray  # (W,)
    token_end: np.ndarray  # (W,) exclusive
    probs: np.ndarray  # (W, n_labels)
    picked: np.ndarray | None = None  # MAX: the subword each word's probabilities came from


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    out: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return out


def word_boundaries(word_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token ranges of consecutive equal word ids (a token with id -1 is its own word)."""
    n = word_ids.shape[0]
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    change = np.ones(n, dtype=bool)
    change[1:] = (word_ids[1:] != word_ids[:-1]) | (word_ids[1:] < 0)
    starts = np.nonzero(change)[0]
    ends = np.append(starts[1:], n)
    return starts, ends


def aggregate_words(probs: np.ndarray, word_ids: np.ndarray, strategy: Strategy) -> Words:
    starts, ends = word_boundaries(word_ids)
    if strategy is Strategy.FIRST:
        word_probs = probs[starts]
    elif strategy is Strategy.AVERAGE:
        sums = np.add.reduceat(probs, starts, axis=0) if len(starts) else probs[:0]
        word_probs = sums / (ends - starts)[:, None]
    elif strategy is Strategy.MAX:
        confidence = probs.max(axis=-1)
        picked = np.asarray([s + int(np.argmax(confidence[s:e])) for s, e in zip(starts, ends)], dtype=np.int64)
        return Words(starts, ends, probs[picked] if len(picked) else probs[:0], picked)
    else:  # pragma: no cover - Enum exhausts the cases
        raise ValueError(strategy)
    return Words(starts, ends, word_probs)


def decode_tags(prefixes: Sequence[str], types: Sequence[str]) -> list[tuple[int, int, str]]:
    """Spans ``(first, last_exclusive, type)`` over a tag sequence, in any BIO-family scheme.

    Tolerant by design: an ``I-X`` after ``O`` or after another type opens a new span (the
    usual repair), ``B-X`` always opens one (so IOB1 works), ``E-X``/``S-X`` close one (BIOES).
    """
    spans: list[tuple[int, int, str]] = []
    open_start, open_type = -1, ""

    def close(end: int) -> None:
        nonlocal open_start, open_type
        if open_start >= 0:
            spans.append((open_start, end, open_type))
        open_start, open_type = -1, ""

    for i, (prefix, kind) in enumerate(zip(prefixes, types)):
        if prefix == OUTSIDE:
            close(i)
            continue
        continues = open_start >= 0 and open_type == kind and prefix in (INSIDE, END)
        if not continues:
            close(i)
            open_start, open_type = i, kind
        if prefix in (END, SINGLE):
            close(i + 1)
    close(len(prefixes))
    return spans


@functools.lru_cache(maxsize=64)
def allowed_transitions(scheme: LabelScheme) -> tuple[np.ndarray, np.ndarray]:
    """``(allowed[prev, cur], allowed_at_start[cur])`` for schemes that have B- labels.

    ``I-X`` and ``E-X`` may only follow ``B-X`` or ``I-X``; in an IO scheme (no B- labels)
    every move is allowed. Cached per scheme (a model has a handful): the arrays are read-only.
    """
    n = len(scheme)
    allowed = np.ones((n, n), dtype=bool)
    start = np.ones(n, dtype=bool)
    if BEGIN not in scheme.prefixes:
        return allowed, start
    for cur in range(n):
        if scheme.prefixes[cur] in (INSIDE, END):
            kind = scheme.types[cur]
            ok = [p for p in range(n) if scheme.types[p] == kind and scheme.prefixes[p] in (BEGIN, INSIDE)]
            allowed[:, cur] = False
            allowed[ok, cur] = True
            start[cur] = False
    allowed.flags.writeable = start.flags.writeable = False
    return allowed, start


def viterbi(scores: np.ndarray, allowed: np.ndarray, start: np.ndarray, transitions: Transitions | None = None) -> np.ndarray:
    """Best label sequence under hard transition constraints; ``(W, L)`` -> ``(W,)``.

    ``scores`` are per-word log-probabilities (or emissions); ``transitions`` adds learned CRF
    scores for each move, for the first label and for the last one.
    """
    penalty = np.where(allowed, 0.0, -np.inf)
    score = scores[0] + np.where(start, 0.0, -np.inf)
    if transitions is not None:
        penalty = penalty + transitions.matrix
        score = score + transitions.start
    back = np.zeros(scores.shape, dtype=np.int64)
    for t in range(1, scores.shape[0]):
        candidates = score[:, None] + penalty  # (prev, cur)
        back[t] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + scores[t]
    if transitions is not None:
        score = score + transitions.end
    path = np.zeros(scores.shape[0], dtype=np.int64)
    path[-1] = int(score.argmax())
    for t in range(scores.shape[0] - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return path


def crf_marginals(scores: np.ndarray, allowed: np.ndarray, start: np.ndarray, transitions: Transitions) -> np.ndarray:
    """``p(label of word t = j | text)`` under the CRF (forward-backward); ``(W, L)``, rows sum to 1.

    A CRF's per-word emission softmax is not a probability of the decoded label; these marginals
    are, so a CRF model's entity scores mean what every other model's do. The recursions run in
    probability space, each step rescaled to sum 1 (a matrix-vector product per word instead of
    a log-sum-exp over a matrix): the scales cancel in each word's marginal.
    """
    allowed_scores = transitions.matrix[allowed]
    moves = np.where(allowed, np.exp(transitions.matrix - allowed_scores.max()), 0.0)
    emit = np.exp(scores - scores.max(axis=1, keepdims=True), dtype=np.float64)
    first = np.where(start, np.exp(transitions.start - transitions.start[start].max()), 0.0)
    n = scores.shape[0]
    alpha = np.empty(scores.shape, dtype=np.float64)
    beta = np.empty(scores.shape, dtype=np.float64)
    alpha[0] = first * emit[0]
    alpha[0] /= alpha[0].sum()
    for t in range(1, n):
        alpha[t] = (alpha[t - 1] @ moves) * emit[t]
        alpha[t] /= alpha[t].sum()
    beta[-1] = np.exp(transitions.end - transitions.end.max())
    for t in range(n - 2, -1, -1):
        beta[t] = moves @ (emit[t + 1] * beta[t + 1])
        beta[t] /= beta[t].sum()
    joint = alpha * beta
    marginals: np.ndarray = np.clip(joint / joint.sum(axis=1, keepdims=True), 0.0, 1.0)
    return marginals


def tempered_crf_marginals(log_probs: np.ndarray, scheme: LabelScheme, transitions: Transitions, temperature: float) -> np.ndarray:
    """Marginals of the CRF whose whole score (emissions and transitions) is divided by ``T``.

    ``log_probs`` may be log-softmaxed: a constant per word cancels in the normaliser at any ``T``.
    Dividing every path's score by ``T`` leaves the best path where it was, so a fitted ``T``
    moves the scores and never the spans.
    """
    allowed, start = allowed_transitions(scheme)
    return crf_marginals(log_probs / temperature, allowed, start, transitions.tempered(temperature))


def entities_from_scores(
    text: str,
    offsets: np.ndarray,
    word_ids: np.ndarray,
    probs: np.ndarray,
    scheme: LabelScheme,
    strategy: Strategy = Strategy.FIRST,
    decoding: Decoding = Decoding.GREEDY,
    transitions: Transitions | None = None,
    calibrated: np.ndarray | None = None,
    alternatives: int = 0,
    temperature: float = 1.0,
) -> list[Entity]:
    """Turn per-token probabilities of one text into entities with offsets into ``text``.

    ``transitions`` (a CRF bundle's) are required by, and only used by, ``Decoding.CRF``.
    ``calibrated`` (the same tokens' temperature-scaled probabilities) gives the scores and the
    ``alternatives`` while ``probs`` alone decides the spans, so calibration never moves a span.
    Under ``Decoding.CRF`` the scores are marginals instead, and ``temperature`` tempers the
    whole CRF (emissions and transition scores alike), which leaves its best path unchanged.
    """
    if probs.shape[0] == 0:
        return []
    words = aggregate_words(probs, word_ids, strategy)
    confidence = words.probs
    if calibrated is not None:  # MAX picked its subwords by the raw scores: read the same ones
        confidence = calibrated[words.picked] if words.picked is not None else aggregate_words(calibrated, word_ids, strategy).probs
    if decoding is Decoding.GREEDY:
        chosen = words.probs.argmax(axis=-1)
    else:
        if decoding is Decoding.CRF and transitions is None:
            raise ValueError("CRF decoding needs the bundle's transition scores")
        crf = transitions if decoding is Decoding.CRF else None
        log_probs, (allowed, start) = np.log(np.maximum(words.probs, 1e-12)), allowed_transitions(scheme)
        chosen = viterbi(log_probs, allowed, start, crf)
        if crf is not None:
            confidence = tempered_crf_marginals(log_probs, scheme, crf, temperature)
    chosen_p = confidence[np.arange(len(chosen)), chosen]
    prefixes = [scheme.prefixes[c] for c in chosen]
    types = [scheme.types[c] for c in chosen]
    entities = []
    for first, last, kind in decode_tags(prefixes, types):
        token_lo, token_hi = int(words.token_start[first]), int(words.token_end[last - 1])
        entity = _make_entity(text, offsets[token_lo:token_hi], kind, float(chosen_p[first:last].mean()))
        if entity is not None and alternatives:
            entity = replace(entity, alternatives=_alternatives(confidence[first:last], scheme, kind, alternatives))
        if entity is not None:
            entities.append(entity)
    return entities


def _alternatives(word_probs: np.ndarray, scheme: LabelScheme, chosen: str, k: int) -> tuple[tuple[str, float], ...]:
    """The other entity types by their probability mass (all of a type's tags) over the words."""
    mass = {t: 0.0 for t in scheme.entity_types if t != chosen}
    for index, kind in enumerate(scheme.types):
        if kind in mass:
            mass[kind] += float(word_probs[:, index].mean())
    return tuple(sorted(mass.items(), key=lambda item: -item[1])[:k])


def _make_entity(text: str, offsets: np.ndarray, label: str, score: float) -> Entity | None:
    real = offsets[offsets[:, 1] > offsets[:, 0]]
    if real.shape[0] == 0:
        return None
    start, end = int(real[:, 0].min()), int(real[:, 1].max())
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start >= end:
        return None
    return Entity(start, end, label, score, text[start:end])
