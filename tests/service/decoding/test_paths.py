"""Many texts' recursions run together, and each text still gets exactly its own answer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.decoding.crf import Transitions
from service.decoding.labels import LabelScheme
from service.decoding.paths import allowed_transitions, crf_marginals_many, viterbi_many

SCHEME = LabelScheme.from_id2label({0: "O", 1: "B-protein", 2: "I-protein", 3: "B-DNA", 4: "I-DNA"})
TEXTS = st.lists(
    st.integers(1, 14).flatmap(lambda n: arrays(np.float64, (n, 5), elements=st.floats(-9, 0))),
    min_size=1,
    max_size=7,
)
CRF = arrays(np.float64, (7, 5), elements=st.floats(-4, 4)).map(lambda a: Transitions(a[:5], a[5], a[6]))


@settings(max_examples=80, deadline=None)
@given(TEXTS, CRF, st.booleans())
def test_each_text_decodes_to_the_same_bits_alone_and_in_any_batch(texts: list[np.ndarray], crf: Transitions, learned: bool) -> None:
    allowed, start = allowed_transitions(SCHEME)
    transitions = crf if learned else None
    together = viterbi_many(texts, allowed, start, transitions)
    backwards = viterbi_many(texts[::-1], allowed, start, transitions)[::-1]
    marginals = crf_marginals_many(texts, allowed, start, crf)
    marginals_backwards = crf_marginals_many(texts[::-1], allowed, start, crf)[::-1]
    for i, text in enumerate(texts):
        [alone] = viterbi_many([text], allowed, start, transitions)
        [alone_marginals] = crf_marginals_many([text], allowed, start, crf)
        assert together[i].shape == (len(text),)
        assert np.array_equal(together[i], alone) and np.array_equal(backwards[i], alone)
        assert np.array_equal(marginals[i], alone_marginals) and np.array_equal(marginals_backwards[i], alone_marginals)
        assert np.allclose(alone_marginals.sum(axis=1), 1.0)


JNLPBA = LabelScheme.from_id2label(
    dict(enumerate(["O"] + [f"{p}-{t}" for t in ("DNA", "RNA", "cell_line", "cell_type", "protein") for p in "BI"]))
)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.integers(1, 40).flatmap(lambda n: arrays(np.float32, (n, 11), elements=st.floats(-20, 0, width=32))),
        min_size=2,
        max_size=9,
    ),
    arrays(np.float64, (13, 11), elements=st.floats(-4, 4)),
    st.randoms(use_true_random=False),
)
def test_the_same_bits_with_eleven_float32_labels_in_any_order(texts: list[np.ndarray], scores: np.ndarray, rng: object) -> None:
    """What the service decodes: JNLPBA's 11 labels, float32 log-probabilities, batch-mates shuffled."""
    crf = Transitions(scores[:11], scores[11], scores[12])
    allowed, start = allowed_transitions(JNLPBA)
    order = list(range(len(texts)))
    rng.shuffle(order)  # type: ignore[attr-defined]
    shuffled = [texts[i] for i in order]
    paths, marginals = viterbi_many(shuffled, allowed, start, crf), crf_marginals_many(shuffled, allowed, start, crf)
    for position, i in enumerate(order):
        assert np.array_equal(paths[position], viterbi_many([texts[i]], allowed, start, crf)[0])
        assert np.array_equal(marginals[position], crf_marginals_many([texts[i]], allowed, start, crf)[0])


def test_every_text_needs_a_word() -> None:
    allowed, start = allowed_transitions(SCHEME)
    with pytest.raises(ValueError, match="at least one word"):
        viterbi_many([np.zeros((2, 5)), np.zeros((0, 5))], allowed, start)
    with pytest.raises(ValueError, match="at least one word"):
        viterbi_many([], allowed, start)


def _log_space_marginals(scores: np.ndarray, allowed: np.ndarray, start: np.ndarray, crf: Transitions) -> np.ndarray:
    """The textbook forward-backward in log space: slow, and never underflows."""
    moves = np.where(allowed, crf.matrix, -np.inf)
    n = len(scores)
    alpha = np.empty_like(scores)
    beta = np.zeros_like(scores)
    alpha[0] = scores[0] + np.where(start, crf.start, -np.inf)
    for t in range(1, n):
        alpha[t] = np.logaddexp.reduce(alpha[t - 1][:, None] + moves, axis=0) + scores[t]
    beta[n - 1] = crf.end
    for t in range(n - 2, -1, -1):
        beta[t] = np.logaddexp.reduce(moves + (scores[t + 1] + beta[t + 1])[None, :], axis=1)
    joint = alpha + beta
    return np.exp(joint - np.logaddexp.reduce(joint, axis=1, keepdims=True))


def test_scores_far_apart_underflow_nothing_and_keep_each_text_to_itself() -> None:
    """A text whose every likely label forbids the next word's likely one: each step keeps only
    mass of order exp(-600). Rescaled every few words that underflows; the text is redone
    rescaled at every word, alone or beside a text that needs no such care."""
    allowed, start = allowed_transitions(SCHEME)
    crf = Transitions(np.zeros((5, 5)), np.zeros(5), np.zeros(5))
    hard = np.full((12, 5), -600.0)
    hard[0::2, 1] = 0.0  # B-protein ...
    hard[1::2, 4] = 0.0  # ... then I-DNA, which may not follow it
    easy = np.log(np.full((9, 5), 0.2))
    together = crf_marginals_many([easy, hard], allowed, start, crf)
    [alone] = crf_marginals_many([hard], allowed, start, crf)
    assert np.isfinite(alone).all() and np.allclose(alone.sum(axis=1), 1.0)
    assert np.array_equal(together[1], alone)
    assert np.array_equal(together[0], crf_marginals_many([easy], allowed, start, crf)[0])
    assert np.allclose(alone, _log_space_marginals(hard, allowed, start, crf), atol=1e-9)
    assert np.allclose(together[0], _log_space_marginals(easy, allowed, start, crf), atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(TEXTS, CRF)
def test_marginals_match_the_log_space_recursion(texts: list[np.ndarray], crf: Transitions) -> None:
    allowed, start = allowed_transitions(SCHEME)
    for text, marginals in zip(texts, crf_marginals_many(texts, allowed, start, crf)):
        assert np.allclose(marginals, _log_space_marginals(text, allowed, start, crf), atol=1e-9)


def test_texts_longer_than_a_block_of_step_matrices() -> None:
    """The step matrices are built a block of words at a time: a full-text section spans several."""
    from service.decoding.paths import BLOCK_WORDS

    allowed, start = allowed_transitions(SCHEME)
    rng = np.random.default_rng(3)
    crf = Transitions(rng.normal(0, 2, (5, 5)), rng.normal(0, 1, 5), rng.normal(0, 1, 5))
    long = rng.normal(0, 3, (2 * BLOCK_WORDS + 37, 5))
    short = rng.normal(0, 3, (BLOCK_WORDS - 5, 5))
    together = crf_marginals_many([short, long], allowed, start, crf)
    assert np.array_equal(together[1], crf_marginals_many([long], allowed, start, crf)[0])
    assert np.array_equal(together[0], crf_marginals_many([short], allowed, start, crf)[0])
    assert np.allclose(together[1], _log_space_marginals(long, allowed, start, crf), atol=1e-9)
    assert np.allclose(together[0], _log_space_marginals(short, allowed, start, crf), atol=1e-9)
