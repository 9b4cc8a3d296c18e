"""Class weights on a toy label distribution, against values computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from train.losses import class_weights, ens_weights, label_counts, welt_weights

LABELS = ["O", "B-X", "I-X", "B-Y", "I-Y"]
COUNTS = np.array([80, 5, 5, 5, 5])


def test_label_counts_skip_ignored_positions() -> None:
    rows = [np.array([-100, 0, 0, 1, 2, -100]), np.array([-100, 3, 4, 0, -100])]
    assert label_counts(rows, 5).tolist() == [3, 1, 1, 1, 1]


def test_welt_by_hand() -> None:
    # groups: O 80, B 10, I 10 of 100 -> CW 0.2, 0.9, 0.9 -> softmax
    o, b = np.exp(0.2), np.exp(0.9)
    expected_o, expected_bi = o / (o + 2 * b), b / (o + 2 * b)
    assert welt_weights(LABELS, COUNTS) == pytest.approx([expected_o, expected_bi, expected_bi, expected_bi, expected_bi])
    assert expected_o == pytest.approx(0.19890, abs=1e-5)


def test_ens_by_hand() -> None:
    raw = np.array([0.5 / (1 - 0.5**80)] + [0.5 / (1 - 0.5**5)] * 4)
    assert ens_weights(COUNTS, 0.5) == pytest.approx(raw / raw.sum() * 5)
    assert ens_weights(COUNTS, 0.5)[0] == pytest.approx(0.974843, abs=1e-6)
    with pytest.raises(ValueError):
        ens_weights(COUNTS, 1.0)


def test_rare_classes_weigh_more() -> None:
    for kind in ("welt", "ens"):
        weights = class_weights(kind, LABELS, COUNTS, beta=0.99)
        assert weights is not None and weights[0] < weights[1:].min()
    assert class_weights("ce", LABELS, COUNTS) is None


@pytest.mark.parametrize("loss", ["welt", "ens"])
def test_weighted_training_runs_and_logs_its_weights(tmp_path: Path, loss: str) -> None:
    pytest.importorskip("torch")
    from tiny_bert import make_base_model, make_corpus

    from train.finetune import TrainConfig, train

    base, corpus = make_base_model(tmp_path / "base"), make_corpus(tmp_path / "corpus")
    train(
        TrainConfig(
            train=[str(corpus)],
            output=str(tmp_path / "ckpt"),
            base_model=str(base),
            epochs=1,
            batch_size=4,
            max_length=24,
            stride=6,
            dev_fraction=0.25,
            loss=loss,
            ens_beta=0.999,
            max_steps=2,
        )
    )
    first = json.loads((tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()[0])
    assert first["loss"] == loss and first["class_weights"]["O"] < first["class_weights"]["B-protein"]
