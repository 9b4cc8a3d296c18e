from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.decoding.aggregate import (
    Decoding,
    Strategy,
    aggregate_words,
    decode_tags,
    entities_from_scores,
)
from service.decoding.crf import Transitions
from service.decoding.labels import LabelScheme, split_label
from service.decoding.paths import allowed_transitions, crf_marginals, viterbi

SCHEME = LabelScheme.from_id2label({0: "O", 1: "B-protein", 2: "I-protein", 3: "B-DNA", 4: "I-DNA"})


def spans_of(tags: list[str]) -> list[tuple[int, int, str]]:
    parts = [split_label(t) for t in tags]
    return decode_tags([p for p, _ in parts], [k for _, k in parts])


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (["B-protein", "I-protein", "O"], [(0, 2, "protein")]),
        (["O", "I-protein", "I-protein"], [(1, 3, "protein")]),  # I- without B- opens a span
        (["B-protein", "I-DNA"], [(0, 1, "protein"), (1, 2, "DNA")]),  # type change repairs
        (["B-protein", "B-DNA"], [(0, 1, "protein"), (1, 2, "DNA")]),  # adjacent, different types
        (["B-protein", "B-protein"], [(0, 1, "protein"), (1, 2, "protein")]),  # IOB1 boundary
        (["I-protein", "I-protein", "O", "I-DNA"], [(0, 2, "protein"), (3, 4, "DNA")]),  # IO scheme
        (["S-protein", "B-DNA", "I-DNA", "E-DNA", "S-DNA"], [(0, 1, "protein"), (1, 4, "DNA"), (4, 5, "DNA")]),  # BIOES
        (["E-DNA", "O"], [(0, 1, "DNA")]),  # stray E- is a single-word entity
        ([], []),
        (["O", "O"], []),
    ],
)
def test_decode_tags(tags: list[str], expected: list[tuple[int, int, str]]) -> None:
    assert spans_of(tags) == expected


def test_split_label_variants() -> None:
    assert split_label("O") == ("O", "")
    assert split_label("B-cell_line") == ("B", "cell_line")
    assert split_label("L-DNA") == ("E", "DNA")
    assert split_label("U-DNA") == ("S", "DNA")
    assert split_label("protein") == ("I", "protein")


def one_hot(labels: list[int], p: float = 0.9) -> np.ndarray:
    out = np.full((len(labels), 5), (1 - p) / 4, dtype=np.float32)
    out[np.arange(len(labels)), labels] = p
    return out


def test_strategies_differ_on_a_split_word() -> None:
    # one word of three subwords: B-protein (0.6), I-DNA (0.95), O (0.5)
    probs = np.array([[0.1, 0.6, 0.1, 0.1, 0.1], [0.0, 0.0, 0.0, 0.05, 0.95], [0.5, 0.2, 0.1, 0.1, 0.1]], dtype=np.float32)
    word_ids = np.array([0, 0, 0])
    first = aggregate_words(probs, word_ids, Strategy.FIRST).probs.argmax(-1)
    maxed = aggregate_words(probs, word_ids, Strategy.MAX).probs.argmax(-1)
    average = aggregate_words(probs, word_ids, Strategy.AVERAGE).probs
    assert first.tolist() == [1] and maxed.tolist() == [4]
    np.testing.assert_allclose(average[0], probs.mean(0), rtol=1e-6)


def test_entity_offsets_and_score() -> None:
    text = "The p53 kinase."
    offsets = np.array([[0, 3], [4, 7], [8, 14], [14, 15]])
    word_ids = np.array([0, 1, 2, 3])
    probs = one_hot([0, 1, 2, 0])
    [entity] = entities_from_scores(text, offsets, word_ids, probs, SCHEME)
    assert (entity.start, entity.end, entity.text, entity.label) == (4, 14, "p53 kinase", "protein")
    assert entity.score == pytest.approx(0.9)


def test_whitespace_never_inside_span_edges() -> None:
    text = "  p53\u00a0 "
    offsets = np.array([[1, 6]])  # a tokenizer whose offsets include spaces
    [entity] = entities_from_scores(text, offsets, np.array([0]), one_hot([1]), SCHEME)
    assert entity.text == "p53" and text[entity.start : entity.end] == "p53"


def test_unicode_offsets_slice_the_input() -> None:
    text = "β-catenin 蛋白 🧬 café"
    offsets = np.array([[0, 1], [1, 2], [2, 9], [10, 11], [11, 12], [13, 14], [15, 19]])
    word_ids = np.array([0, 1, 2, 3, 4, 5, 6])
    probs = one_hot([1, 2, 2, 1, 2, 0, 3])
    entities = entities_from_scores(text, offsets, word_ids, probs, SCHEME)
    assert [(e.text, e.label) for e in entities] == [("β-catenin", "protein"), ("蛋白", "protein"), ("café", "DNA")]
    assert all(text[e.start : e.end] == e.text for e in entities)


def test_empty_input_gives_no_entities() -> None:
    assert entities_from_scores("", np.zeros((0, 2), int), np.zeros(0, int), np.zeros((0, 5)), SCHEME) == []


def test_constrained_decoding_fixes_a_type_flip_inside_an_entity() -> None:
    text = "IL-2 gene"
    offsets = np.array([[0, 4], [5, 9]])
    probs = np.array([[0.1, 0.1, 0.1, 0.6, 0.1], [0.05, 0.05, 0.5, 0.0, 0.4]], dtype=np.float32)  # B-DNA, then I-protein > I-DNA
    greedy = entities_from_scores(text, offsets, np.array([0, 1]), probs, SCHEME, decoding=Decoding.GREEDY)
    constrained = entities_from_scores(text, offsets, np.array([0, 1]), probs, SCHEME, decoding=Decoding.CONSTRAINED)
    assert [(e.text, e.label) for e in greedy] == [("IL-2", "DNA"), ("gene", "protein")]
    assert [(e.text, e.label) for e in constrained] == [("IL-2 gene", "DNA")]


def test_io_schemes_are_unconstrained() -> None:
    allowed, start = allowed_transitions(LabelScheme.from_id2label({0: "O", 1: "I-DNA", 2: "I-protein"}))
    assert allowed.all() and start.all()


@settings(max_examples=200, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 5), st.just(5)), elements=st.floats(-8, 0)))
def test_viterbi_equals_brute_force(log_probs: np.ndarray) -> None:
    allowed, start = allowed_transitions(SCHEME)
    best, best_path = -np.inf, None
    for path in itertools.product(range(5), repeat=log_probs.shape[0]):
        if not start[path[0]] or not all(allowed[a, b] for a, b in zip(path, path[1:])):
            continue
        score = sum(log_probs[t, j] for t, j in enumerate(path))
        if score > best:
            best, best_path = score, path
    found = viterbi(log_probs, allowed, start)
    assert sum(log_probs[t, j] for t, j in enumerate(found)) == pytest.approx(best, abs=1e-9)
    assert start[found[0]] and all(allowed[a, b] for a, b in zip(found, found[1:]))
    assert best_path is not None


def _crf_path_score(path: tuple[int, ...], emissions: np.ndarray, crf: Transitions) -> float:
    score = crf.start[path[0]] + crf.end[path[-1]] + sum(emissions[t, j] for t, j in enumerate(path))
    return float(score + sum(crf.matrix[a, b] for a, b in zip(path, path[1:])))


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 5), st.just(5)), elements=st.floats(-8, 0)),
    arrays(np.float64, (7, 5), elements=st.floats(-5, 5)),
)
def test_viterbi_with_crf_transitions_equals_brute_force(emissions: np.ndarray, scores: np.ndarray) -> None:
    crf = Transitions(scores[:5], scores[5], scores[6])
    allowed, start = allowed_transitions(SCHEME)
    valid = [
        path
        for path in itertools.product(range(5), repeat=emissions.shape[0])
        if start[path[0]] and all(allowed[a, b] for a, b in zip(path, path[1:]))
    ]
    best = max(_crf_path_score(p, emissions, crf) for p in valid)
    found = tuple(int(j) for j in viterbi(emissions, allowed, start, crf))
    assert found in valid
    assert _crf_path_score(found, emissions, crf) == pytest.approx(best, abs=1e-9)


def test_crf_transitions_change_the_decision() -> None:
    text = "p53 myc"
    offsets, word_ids = np.array([[0, 3], [4, 7]]), np.array([0, 1])
    probs = np.array([[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.35, 0.1, 0.35]], dtype=np.float32)  # B-protein, then I-protein ~ I-DNA
    matrix = np.zeros((5, 5))
    plain = entities_from_scores(text, offsets, word_ids, probs, SCHEME, decoding=Decoding.CONSTRAINED)
    matrix[1, 2] = -3.0  # learned: "B-protein I-protein" is rare; a new protein mention is likelier
    matrix[1, 1] = 2.0
    crf = Transitions(matrix, np.zeros(5), np.zeros(5))
    learned = entities_from_scores(text, offsets, word_ids, probs, SCHEME, decoding=Decoding.CRF, transitions=crf)
    assert [(e.text, e.label) for e in plain] == [("p53 myc", "protein")]
    assert [(e.text, e.label) for e in learned] == [("p53", "protein"), ("myc", "protein")]
    with pytest.raises(ValueError, match="transition scores"):
        entities_from_scores(text, offsets, word_ids, probs, SCHEME, decoding=Decoding.CRF)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must be an object"),
        ({"transitions": [[0.0]], "start": [0.0]}, "must be an object"),
        ({"transitions": [[0.0, 1.0]], "start": [0.0], "end": [0.0]}, "shapes disagree"),
        ({"transitions": [["a"]], "start": [0.0], "end": [0.0]}, "not numbers"),
        ({"transitions": [[float("nan")]], "start": [0.0], "end": [0.0]}, "finite"),
    ],
)
def test_transitions_from_json_rejects_bad_scores(data: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Transitions.from_json(data)


def test_transitions_round_trip_json() -> None:
    crf = Transitions(np.arange(4.0).reshape(2, 2), np.array([0.5, -1.0]), np.array([1.5, 2.0]))
    again = Transitions.from_json(crf.to_json())
    assert np.array_equal(again.matrix, crf.matrix) and np.array_equal(again.start, crf.start) and np.array_equal(again.end, crf.end)


@settings(max_examples=150, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(1, 4), st.just(5)), elements=st.floats(-8, 0)),
    arrays(np.float64, (7, 5), elements=st.floats(-5, 5)),
)
def test_crf_marginals_equal_enumeration(emissions: np.ndarray, scores: np.ndarray) -> None:
    crf = Transitions(scores[:5], scores[5], scores[6])
    allowed, start = allowed_transitions(SCHEME)
    n = emissions.shape[0]
    expected = np.zeros((n, 5))
    for path in itertools.product(range(5), repeat=n):
        if start[path[0]] and all(allowed[a, b] for a, b in zip(path, path[1:])):
            weight = np.exp(_crf_path_score(path, emissions, crf))
            expected[np.arange(n), path] += weight
    expected /= expected[0].sum()
    marginals = crf_marginals(emissions, allowed, start, crf)
    assert np.allclose(marginals, expected, atol=1e-9)
    assert np.allclose(marginals.sum(axis=1), 1.0)


def test_crf_entity_scores_are_marginal_probabilities() -> None:
    text = "p53 myc"
    offsets, word_ids = np.array([[0, 3], [4, 7]]), np.array([0, 1])
    probs = np.array([[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.35, 0.1, 0.35]], dtype=np.float32)
    flat = Transitions(np.zeros((5, 5)), np.zeros(5), np.zeros(5))
    [entity] = entities_from_scores(text, offsets, word_ids, probs, SCHEME, decoding=Decoding.CRF, transitions=flat)
    allowed, start = allowed_transitions(SCHEME)
    marginals = crf_marginals(np.log(probs.astype(np.float64)), allowed, start, flat)
    assert (entity.text, entity.label) == ("p53 myc", "protein")
    assert entity.score == pytest.approx((marginals[0, 1] + marginals[1, 2]) / 2, rel=1e-5)
    assert entity.score != pytest.approx((0.6 + 0.35) / 2)  # not the emission softmax
