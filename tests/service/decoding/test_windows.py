from __future__ import annotations

import numpy as np
import pytest
from tiny_bundle import build_tokenizer

from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Pipeline
from service.decoding.windows import TextEncoder, WindowConfig, WindowSpan, owner_windows, plan_windows, stitch


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
