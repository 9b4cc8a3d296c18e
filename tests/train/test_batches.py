"""Batches and seeded splits: every item exactly once, little padding, and the same seed the same order."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from train.align import IGNORE, Feature  # noqa: E402
from train.batches import length_grouped_batches, pad_labelled, sorted_batches  # noqa: E402
from train.data import held_out_split, seeded_order  # noqa: E402

LENGTHS = [5, 3, 9, 3, 7, 1, 8, 2, 6, 4, 9]


def _features(lengths: list[int]) -> list[Feature]:
    return [Feature(np.arange(n, dtype=np.int64), np.zeros(n, dtype=np.int64)) for n in lengths]


def test_length_grouped_batches_cover_every_window_once_in_a_seeded_order() -> None:
    features = _features(LENGTHS * 20)
    batches = length_grouped_batches(features, 4, np.random.default_rng(3))
    assert sorted(i for b in batches for i in b) == list(range(len(features)))
    assert all(1 <= len(b) <= 4 for b in batches)
    assert batches == length_grouped_batches(features, 4, np.random.default_rng(3))
    assert batches != length_grouped_batches(features, 4, np.random.default_rng(4))
    padded = sum(len(b) * max(LENGTHS[i % len(LENGTHS)] for i in b) for b in batches)
    assert padded < 1.1 * sum(LENGTHS * 20)  # sorted inside the mega-chunk: almost no padding


def test_sorted_batches_keep_length_order_and_shuffle_only_whole_batches() -> None:
    batches = sorted_batches(LENGTHS, 3, None)
    assert [LENGTHS[i] for b in batches for i in b] == sorted(LENGTHS)
    shuffled = sorted_batches(LENGTHS, 3, np.random.default_rng(0))
    assert sorted(shuffled) == sorted(batches)


def test_padding_is_masked_and_never_trained() -> None:
    batch = pad_labelled([(np.array([7, 8, 9]), np.array([1, 2, 0])), (np.array([7]), np.array([IGNORE]))], pad_id=0)
    assert batch["input_ids"].tolist() == [[7, 8, 9], [7, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[1, 2, 0], [IGNORE, IGNORE, IGNORE]]


def test_held_out_split_partitions_by_the_seed() -> None:
    texts = [f"t{i}" for i in range(20)]
    held, rest = held_out_split(texts, 0.1, seed=13)
    assert len(held) == 2 and sorted(held + rest) == sorted(texts)
    assert (held, rest) == held_out_split(texts, 0.1, seed=13)
    assert held == [texts[i] for i in seeded_order(20, 13)[:2]]
    assert len(held_out_split(texts[:3], 0.01, seed=1)[0]) == 1  # at least one text is held out
