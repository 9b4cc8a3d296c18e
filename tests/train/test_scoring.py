"""Strict span scoring and the seqeval path for column files, on hand-made predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.corpora import read_corpus
from service.corpora.scoring import format_table, span_scores
from service.decoding.aggregate import Entity
from train.evaluate import seqeval_report, tags_from_spans


def test_span_scores_per_type_micro_macro() -> None:
    gold = [[(0, 3, "A"), (4, 7, "B")], [(0, 2, "A")]]
    pred = [[(0, 3, "A"), (4, 6, "B")], [(0, 2, "A"), (3, 5, "B")]]  # one boundary error, one spurious
    report = span_scores(gold, pred)
    assert report["per_type"]["A"]["f1"] == 1.0
    assert report["per_type"]["B"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert report["micro"]["precision"] == pytest.approx(2 / 4) and report["micro"]["recall"] == pytest.approx(2 / 3)
    assert report["macro"]["f1"] == pytest.approx(0.5)
    assert "micro" in format_table(report)


def test_seqeval_strict_on_column_tokens(tmp_path: Path) -> None:
    path = tmp_path / "dev.tsv"
    path.write_text("Familial\tB-Disease\nbreast\tI-Disease\ncancer\tI-Disease\nin\tO\nBRCA1\tO\n", encoding="utf-8")
    [doc] = read_corpus(path)
    assert tags_from_spans(doc, [(s.start, s.end, s.label) for s in doc.spans]) == ["B-Disease", "I-Disease", "I-Disease", "O", "O"]
    exact = [Entity(0, 22, "Disease", 0.9, "Familial breast cancer")]
    partial = [Entity(9, 22, "Disease", 0.9, "breast cancer")]
    assert seqeval_report([doc], [exact])["report"]["micro avg"]["f1-score"] == 1.0
    strict = seqeval_report([doc], [partial])
    assert strict["report"]["micro avg"]["f1-score"] == 0.0  # strict IOB2: a boundary error is a miss
    assert strict["token_accuracy"] == pytest.approx(3 / 5)


def test_evaluate_types_scores_only_the_shared_types(tiny_bundle: Path, tmp_path: Path) -> None:
    """Cross-corpus: gold Chemical spans the model cannot know are set aside with --types."""
    from train.cli import main

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    text = "p53 kinase binds aspirin"
    (corpus / "d1.txt").write_text(text, encoding="utf-8")
    (corpus / "d1.ann").write_text("T1\tprotein 0 10\tp53 kinase\nT2\tChemical 17 24\taspirin\n", encoding="utf-8")
    reports = {}
    for name, extra in (("all", []), ("shared", ["--types", "protein"])):
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", "--model", str(tiny_bundle), "--data", str(corpus), "--report", str(out), *extra]) == 0
        reports[name] = json.loads(out.read_text())
    assert reports["all"]["micro"]["recall"] == pytest.approx(0.5)  # the Chemical gold span counts as missed
    assert reports["shared"]["micro"] == {**reports["shared"]["micro"], "precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert set(reports["shared"]["per_type"]) == {"protein"}
