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


def test_every_text_needs_a_word() -> None:
    allowed, start = allowed_transitions(SCHEME)
    with pytest.raises(ValueError, match="at least one word"):
        viterbi_many([np.zeros((2, 5)), np.zeros((0, 5))], allowed, start)
    with pytest.raises(ValueError, match="at least one word"):
        viterbi_many([], allowed, start)
