from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paths import JNLPBA_BUNDLE
from tiny_bundle import build_tokenizer

from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Pipeline
from service.decoding.windows import (
    Align,
    TextEncoder,
    WindowConfig,
    WindowSpan,
    owner_windows,
    plan_sentence_windows,
    plan_windows,
    sentence_starts,
    stitch,
)


def test_short_text_is_one_window() -> None:
    assert plan_windows(10, 14, 4) == [WindowSpan(0, 10)]


def test_windows_cover_everything_with_the_requested_overlap() -> None:
    spans = plan_windows(40, 14, 4)
    assert spans[0].start == 0 and spans[-1].end == 40
    for a, b in zip(spans, spans[1:]):
        assert a.end - b.start >= 4  # at least the overlap; the last one may overlap more
    covered = np.zeros(40, bool)
    for s in spans:
        covered[s.start : s.end] = True
    assert covered.all()


@pytest.mark.parametrize("stride", [-1, 14, 20])
def test_invalid_stride_is_rejected(stride: int) -> None:
    with pytest.raises(ValueError):
        plan_windows(40, 14, stride)


def test_each_token_comes_from_its_most_central_window() -> None:
    spans = [WindowSpan(0, 10), WindowSpan(6, 16)]
    owners = owner_windows(16, spans)
    # tokens 0-7 are deeper in window 0 (or tie-break to it), 8-15 in window 1
    assert owners.tolist() == [0] * 8 + [1] * 8


def test_stitch_takes_rows_from_the_owner_window() -> None:
    spans = [WindowSpan(0, 10), WindowSpan(6, 16)]
    first = np.full((10, 2), 1.0)
    second = np.full((10, 2), 2.0)
    out = stitch(16, spans, [first, second])
    assert out[:8, 0].tolist() == [1.0] * 8 and out[8:, 0].tolist() == [2.0] * 8


def test_stitch_checks_row_counts() -> None:
    with pytest.raises(ValueError):
        stitch(16, [WindowSpan(0, 16)], [np.zeros((3, 2))])


def test_encoder_turns_off_truncation_and_padding() -> None:
    encoder = TextEncoder(build_tokenizer())  # the tokenizer ships with truncation/padding at 16
    encoded = encoder.encode(" ".join(["p53"] * 50))
    assert len(encoded) == 50
    assert encoder.prefix_ids == [2] and encoder.suffix_ids == [3]


def test_long_text_logits_equal_short_text_logits_for_context_free_model() -> None:
    """With a per-token model, stitching many windows must reproduce every token's row."""
    encoder = TextEncoder(build_tokenizer())
    table = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return table[ids] * mask[..., None]

    pipeline = Pipeline(encoder, LabelScheme.from_id2label({0: "O", 1: "B-x", 2: "I-x"}), WindowConfig(16, 6))
    plan = pipeline.plan(["the p53 kinase binds " * 30, "myc"])
    assert len(plan.rows) > 10  # the long text really is cut into many windows
    logits = pipeline.token_logits(plan, pipeline.run(run, plan, batch_size=3))
    for text, lg in zip(plan.texts, logits):
        np.testing.assert_allclose(lg, table[text.encoded.ids])


# ---------------------------------------------------------------------------------- sentence-aligned windows
def test_sentence_windows_end_at_sentence_starts_without_overlap() -> None:
    # content 10: each window ends at the last sentence start in (start + 5, start + 10].
    spans = plan_sentence_windows(30, 10, 3, np.array([4, 7, 14, 22, 25]))
    assert spans == [WindowSpan(0, 7), WindowSpan(7, 14), WindowSpan(14, 22), WindowSpan(22, 30)]


def test_a_sentence_longer_than_a_window_is_cut_with_overlap() -> None:
    spans = plan_sentence_windows(30, 10, 3, np.array([2, 25]))  # 2 is in the first half: no cut there
    assert spans[0] == WindowSpan(0, 10) and spans[1].start == 7  # cut inside the sentence, overlap 3
    assert spans[-1].end == 30
    covered = np.zeros(30, bool)
    for s in spans:
        covered[s.start : s.end] = True
    assert covered.all() and all(s.end - s.start <= 10 for s in spans)


@given(
    n=st.integers(1, 400),
    content=st.integers(4, 64),
    stride_share=st.floats(0, 0.9),
    starts=st.lists(st.integers(1, 399), max_size=60),
)
def test_sentence_windows_cover_every_token_within_the_bound(n: int, content: int, stride_share: float, starts: list[int]) -> None:
    stride = min(content - 1, int(content * stride_share))
    config = WindowConfig(content, stride, Align.SENTENCES)
    spans = config.plan(n, 0, np.array(sorted(set(s for s in starts if s < n)), dtype=np.int64))
    covered = np.zeros(n, bool)
    for s in spans:
        assert 0 < s.end - s.start <= content
        covered[s.start : s.end] = True
    assert covered.all() and spans[-1].end == n
    assert len(spans) <= config.max_windows(n, 0)  # admission's bound holds whatever the sentences


@pytest.fixture(scope="module")
def minilm_encoder() -> TextEncoder:
    return TextEncoder.from_file(JNLPBA_BUNDLE / "tokenizer.json")


def test_sentence_starts_find_sentences_not_abbreviations(minilm_encoder: TextEncoder) -> None:
    text = "IL-2 binds the receptor (e.g. CD25) in T cells. The kinase was active, as Smith et al. Reported. 3 mice died! Why?"
    encoded = minilm_encoder.encode(text)
    found = [text[encoded.offsets[i][0] :].split()[0] for i in sentence_starts(text, encoded)]
    assert found == ["The", "3", "Why?"]


def test_pipeline_aligned_to_sentences_reads_each_token_once(minilm_encoder: TextEncoder) -> None:
    scheme = LabelScheme.from_id2label({0: "O", 1: "B-x", 2: "I-x"})
    text = " ".join(f"Sentence number {k} mentions the p53 protein and the NF-kappa B complex." for k in range(40))
    tokens = Pipeline(minilm_encoder, scheme, WindowConfig(64, 16)).plan([text])
    sentences = Pipeline(minilm_encoder, scheme, WindowConfig(64, 16, Align.SENTENCES)).plan([text])
    assert tokens.work_tokens > 1.2 * tokens.tokens  # overlapping windows read a fifth of the text twice
    assert sentences.work_tokens == sentences.tokens  # every cut fell on a sentence start
    for span in sentences.texts[0].spans[1:]:
        assert text[sentences.texts[0].encoded.offsets[span.start][0] :].startswith("Sentence")
