"""Multi-task training with an auxiliary corpus, low-resource subsets and k-fold cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from tiny_bert import make_base_model, make_corpus  # noqa: E402

from service.corpora import Document  # noqa: E402
from train.data import fold_splits, subsample  # noqa: E402
from train.kfold import summarise  # noqa: E402

TINY = ["--max-length", "24", "--stride", "6", "--batch-size", "4", "--learning-rate", "5e-3", "--dropout", "0"]


def _docs(n: int) -> list[Document]:
    return [Document(f"d{i}", "text", ()) for i in range(n)]


def test_folds_cover_every_document_once() -> None:
    docs = _docs(11)
    splits = fold_splits(docs, 3, seed=5)
    dev_ids = [d.id for _, dev in splits for d in dev]
    assert sorted(dev_ids) == sorted(d.id for d in docs)
    assert [len(dev) for _, dev in splits] in ([4, 4, 3], [4, 3, 4], [3, 4, 4])
    for train_docs, dev in splits:
        assert not {d.id for d in train_docs} & {d.id for d in dev}
    assert fold_splits(docs, 3, seed=5) == splits
    with pytest.raises(ValueError, match="between 2"):
        fold_splits(docs, 12, seed=5)


def test_summary_is_mean_and_sample_sd() -> None:
    def report(f1: float) -> dict[str, object]:
        prf = {"precision": f1, "recall": f1, "f1": f1}
        return {"micro": prf, "per_type": {"gene": prf}}

    summary = summarise([report(0.5), report(0.7), report(0.9)])
    assert summary["micro"]["f1"]["mean"] == pytest.approx(0.7)
    assert summary["per_type"]["gene"]["f1"]["std"] == pytest.approx(0.2)  # sample sd of 0.5, 0.7, 0.9


def test_mixed_batches_keep_every_main_batch_and_the_ratio() -> None:
    from train.batches import mixed_batches

    main = [[i] for i in range(10)]
    aux = [[100 + i] for i in range(3)]
    items = mixed_batches(main, aux, 0.6, np.random.default_rng(0))
    assert sorted(b for t, b in items if t == "main") == main
    assert sum(t == "aux" for t, _ in items) == 15  # 10 main batches are 40% of the epoch


def _aux_corpus(path: Path) -> Path:
    """IO-tagged general-domain columns with one malformed tag to clean."""
    lines = []
    for i in range(10):
        lines += ["the\tO", "p53\tI-ORG", "kinase\tI-ORG", "binds\tO", "myc\tI-LOC", ("cells\tI-I-MISC" if i == 0 else "cells\tI-MISC"), ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def test_multitask_then_finetune_exports_only_the_main_head(tmp_path: Path) -> None:
    from safetensors import safe_open

    from train.cli import main

    base, corpus, aux = make_base_model(tmp_path / "base"), make_corpus(tmp_path / "corpus"), _aux_corpus(tmp_path / "un.tsv")
    out = tmp_path / "mtl"
    argv = ["train", "--train", str(corpus), "--base-model", str(base), "--output", str(out), "--epochs", "1", *TINY]
    argv += ["--aux-train", str(aux), "--aux-tag-map", "I-I-MISC=I-MISC", "--aux-ratio", "0.5", "--aux-epochs", "1"]
    assert main(argv) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["aux"]["labels"] == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG"]
    assert [r["phase"] for r in records[1:]] == ["multitask", "finetune"]
    config = json.loads((out / "config.json").read_text())
    assert sorted(config["id2label"].values()) == ["B-DNA", "B-protein", "I-DNA", "I-protein", "O"]
    with safe_open(str(out / "model.safetensors"), "np") as weights:
        classifier = [k for k in weights.keys() if "classifier" in k]  # noqa: SIM118
        assert sorted(classifier) == ["classifier.bias", "classifier.weight"]
        assert weights.get_tensor("classifier.weight").shape[0] == 5


def test_malformed_aux_tags_are_refused_without_a_map(tmp_path: Path) -> None:
    from service.corpora.columns import MalformedTagError
    from train.cli import main

    base, corpus, aux = make_base_model(tmp_path / "base"), make_corpus(tmp_path / "corpus"), _aux_corpus(tmp_path / "un.tsv")
    argv = ["train", "--train", str(corpus), "--base-model", str(base), "--output", str(tmp_path / "o"), "--aux-train", str(aux), *TINY]
    with pytest.raises(MalformedTagError, match="I-I-MISC"):
        main(argv)


def test_kfold_trains_k_models_and_reports_mean_and_sd(tmp_path: Path) -> None:
    from train.cli import main

    base, corpus = make_base_model(tmp_path / "base"), make_corpus(tmp_path / "corpus")
    out = tmp_path / "cv"
    argv = ["train", "--train", str(corpus), "--base-model", str(base), "--output", str(out), "--folds", "3", "--epochs", "1", *TINY]
    assert main(argv) == 0
    summary = json.loads((out / "kfold.json").read_text())
    assert summary["folds"] == 3 and len(summary["f1_by_fold"]) == 3
    assert set(summary["per_type"]) == {"DNA", "protein"}
    assert all((out / f"fold-{n}" / "best.json").exists() for n in (1, 2, 3))
    assert summary["micro"]["f1"]["mean"] == pytest.approx(np.mean(summary["f1_by_fold"]))
    assert main([*argv[:-4], "--folds", "1"]) == 2  # K < 2 is refused with one line


def test_train_fraction_keeps_a_seeded_share(tmp_path: Path) -> None:
    docs = _docs(40)
    quarter = subsample(docs, 0.25, seed=13)
    assert len(quarter) == 10 and quarter == subsample(docs, 0.25, seed=13)
    assert [d.id for d in quarter] == sorted((d.id for d in quarter), key=lambda s: int(s[1:]))  # original order
    assert subsample(docs, 1.0, seed=13) == docs
