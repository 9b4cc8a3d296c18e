"""Subword scores -> word labels -> entity spans with exact character offsets.

Words are the tokenizer's pre-tokenizer words (``word_ids``), never a split on spaces, so texts
without spaces (Chinese) and punctuation-heavy names (``IL-2``) decode the same way.

Score of an entity: the mean, over its words, of the probability of the label chosen for that
word (after subword aggregation); under CRF decoding, of the CRF's marginal probability of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from typing import cast

import numpy as np

from service.decoding.crf import Transitions
from service.decoding.labels import END, INSIDE, OUTSIDE, SINGLE, LabelScheme
from service.decoding.paths import allowed_transitions, tempered_crf_marginals_many, viterbi_many


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


@dataclass(frozen=True)
class WordScores:
    """One text's words under one head, before its label sequence is chosen."""

    words: Words
    confidence: np.ndarray  # (W, L): what entity scores and alternatives read (calibrated, if given)


def word_scores(probs: np.ndarray, word_ids: np.ndarray, strategy: Strategy, calibrated: np.ndarray | None = None) -> WordScores:
    words = aggregate_words(probs, word_ids, strategy)
    if calibrated is None:
        return WordScores(words, words.probs)
    # MAX picked its subwords by the raw scores: read the same ones
    confidence = calibrated[words.picked] if words.picked is not None else aggregate_words(calibrated, word_ids, strategy).probs
    return WordScores(words, confidence)


def choose_labels(
    texts: Sequence[WordScores],
    scheme: LabelScheme,
    decoding: Decoding,
    transitions: Transitions | None = None,
    temperature: float = 1.0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each text's label ids, and the per-word distribution its entity scores are read from.

    The path decodings run every text's recursions together (``paths``): a text's answer is the
    same bits whatever else is decoded with it. Every text needs at least one word.
    """
    confidence = [t.confidence for t in texts]
    if decoding is Decoding.GREEDY:
        return [(t.words.probs.argmax(axis=-1), c) for t, c in zip(texts, confidence)]
    if decoding is Decoding.CRF and transitions is None:
        raise ValueError("CRF decoding needs the bundle's transition scores")
    crf = transitions if decoding is Decoding.CRF else None
    log_probs = [np.log(np.maximum(t.words.probs, 1e-12)) for t in texts]
    allowed, start = allowed_transitions(scheme)
    chosen = viterbi_many(log_probs, allowed, start, crf)
    if crf is not None:
        confidence = tempered_crf_marginals_many(log_probs, scheme, crf, temperature)
    return list(zip(chosen, confidence))


def entities_from_labels(
    text: str,
    offsets: np.ndarray,
    words: Words,
    chosen: np.ndarray,
    confidence: np.ndarray,
    scheme: LabelScheme,
    alternatives: int = 0,
    source: str = "",
) -> list[Entity]:
    """Spans of the chosen labels, with offsets into ``text`` and the mean confidence of their words."""
    return entities_from_spans(text, offsets, words, label_spans(chosen, scheme), chosen, confidence, scheme, alternatives, source)


def label_spans(chosen: np.ndarray, scheme: LabelScheme) -> list[tuple[int, int, str]]:
    """Word spans ``(first, last_exclusive, type)`` of one text's chosen class ids."""
    ids = cast("list[int]", chosen.tolist())
    return decode_tags([scheme.prefixes[c] for c in ids], [scheme.types[c] for c in ids])


def entities_from_spans(
    text: str,
    offsets: np.ndarray,
    words: Words,
    spans: Sequence[tuple[int, int, str]],
    chosen: np.ndarray,
    confidence: np.ndarray,
    scheme: LabelScheme,
    alternatives: int = 0,
    source: str = "",
    decided_by: Sequence[int | None] | None = None,
) -> list[Entity]:
    """Entities of word spans ``(first, last_exclusive, type)``, each scored by the mean confidence of
    its words' chosen labels; with ``decided_by``, a span whose entry names another span (its type was
    decided there) takes that span's score instead.

    Per entity this is plain Python over lists (a few per text, each a handful of words): numpy's
    per-call cost would be most of the time."""
    chosen_p = cast("list[float]", confidence[np.arange(len(chosen)), chosen].tolist())
    token_start, token_end = cast("list[int]", words.token_start.tolist()), cast("list[int]", words.token_end.tolist())
    scores = [sum(chosen_p[first:last]) / (last - first) for first, last, _ in spans]
    entities = []
    for k, (first, last, kind) in enumerate(spans):
        pieces = cast("list[list[int]]", offsets[token_start[first] : token_end[last - 1]].tolist())
        decider = decided_by[k] if decided_by is not None else None
        entity = _make_entity(text, pieces, kind, scores[k if decider is None else decider], source)
        if entity is not None and alternatives:
            entity = replace(entity, alternatives=_alternatives(confidence[first:last], scheme, kind, alternatives))
        if entity is not None:
            entities.append(entity)
    return entities


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
    scored = word_scores(probs, word_ids, strategy, calibrated)
    [(chosen, confidence)] = choose_labels([scored], scheme, decoding, transitions, temperature)
    return entities_from_labels(text, offsets, scored.words, chosen, confidence, scheme, alternatives)


def _alternatives(word_probs: np.ndarray, scheme: LabelScheme, chosen: str, k: int) -> tuple[tuple[str, float], ...]:
    """The other entity types by their probability mass (all of a type's tags) over the words."""
    mass = {t: 0.0 for t in scheme.entity_types if t != chosen}
    for index, kind in enumerate(scheme.types):
        if kind in mass:
            mass[kind] += float(word_probs[:, index].mean())
    return tuple(sorted(mass.items(), key=lambda item: -item[1])[:k])


def _bounds(text: str, pieces: list[list[int]]) -> tuple[int, int] | None:
    """``[start, end)`` over subwords' character pieces, trimmed of whitespace; ``None`` if empty."""
    real = [(a, b) for a, b in pieces if b > a]
    if not real:
        return None
    start, end = min(a for a, _ in real), max(b for _, b in real)
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def span_text(text: str, offsets: np.ndarray, words: Words, first: int, last: int) -> str | None:
    """The characters of words ``[first, last)`` exactly as their entity's ``text`` would be."""
    pieces = cast("list[list[int]]", offsets[int(words.token_start[first]) : int(words.token_end[last - 1])].tolist())
    bounds = _bounds(text, pieces)
    return None if bounds is None else text[bounds[0] : bounds[1]]


def _make_entity(text: str, pieces: list[list[int]], label: str, score: float, source: str) -> Entity | None:
    """The entity over its subwords' ``[start, end)`` character pieces, trimmed of whitespace."""
    bounds = _bounds(text, pieces)
    if bounds is None:
        return None
    start, end = bounds
    return Entity(start, end, label, score, text[start:end], source=source)
