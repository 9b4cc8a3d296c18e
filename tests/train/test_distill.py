"""Distillation: the loss's limits, the student's layers, and a tiny teacher -> student run through export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("optimum")

from tiny_bert import export_bundle, make_base_model, make_corpus, tiny_train_config  # noqa: E402

from train.align import IGNORE  # noqa: E402
from train.distill import Teacher, distill_loss, kept_layers  # noqa: E402
from train.finetune import train  # noqa: E402


def test_kept_layers_are_evenly_spaced_and_end_with_the_last() -> None:
    assert kept_layers(6, 3) == [1, 3, 5]
    assert kept_layers(6, 2) == [2, 5]
    assert kept_layers(6, 6) == [0, 1, 2, 3, 4, 5]
    assert kept_layers(12, 4) == [2, 5, 8, 11]
    with pytest.raises(ValueError, match="1 to 6 layers"):
        kept_layers(6, 7)


def test_loss_limits() -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 3, generator=generator)
    labels = torch.tensor([[IGNORE, 0, 2, 1, IGNORE], [IGNORE, 1, 1, IGNORE, IGNORE]])
    soft = torch.softmax(torch.randn(2, 5, 3, generator=generator), -1)
    trained = labels != IGNORE
    ce = torch.nn.functional.cross_entropy(logits[trained], labels[trained])
    # alpha 0: plain cross-entropy
    assert torch.allclose(distill_loss(logits, labels, soft, Teacher([], 0.0, 2.0)), ce)
    # a one-hot teacher at T = 1 is the gold tag: KL = cross-entropy
    one_hot = torch.nn.functional.one_hot(labels.clamp_min(0), 3).float()
    assert torch.allclose(distill_loss(logits, labels, one_hot, Teacher([], 1.0, 1.0)), ce, atol=1e-6)
    # a student that already answers like the teacher has nothing left to learn from it
    assert float(distill_loss(soft.log(), labels, soft, Teacher([], 1.0, 1.0))) == pytest.approx(0.0, abs=1e-6)
    # padding never counts: changing ignored positions changes nothing
    moved = logits.clone()
    moved[~trained] += 100.0
    mixed = Teacher([], 0.5, 2.0)
    assert torch.allclose(distill_loss(moved, labels, soft, mixed), distill_loss(logits, labels, soft, mixed))


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("distill")
    base, corpus = make_base_model(root / "base"), make_corpus(root / "corpus")
    teacher = root / "teacher"
    train(tiny_train_config(base, corpus, teacher, epochs=3))
    assert export_bundle(teacher, root / "teacher-bundle", "--quantize", "none") == 0
    return base, corpus, teacher


def test_student_with_fewer_layers_learns_from_an_ensemble_and_exports(tiny_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, corpus, teacher = tiny_runs
    student = tmp_path / "student"
    teachers = [str(teacher), str(teacher.parent / "teacher-bundle")]  # a checkpoint and an ONNX bundle: an ensemble
    raw = tmp_path / "raw.txt"  # unlabelled text for the teacher to label: soft labels only
    raw.write_text("the myc gene binds p53 .\nkinase in the cells .\n", encoding="utf-8")
    settings = {"epochs": 5, "teacher": teachers, "distill_alpha": 0.7, "student_layers": 1, "distill_text": [str(raw)]}
    best = train(tiny_train_config(base, corpus, student, **settings))
    header = json.loads((student / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert header["student_layers"] == [1]
    text = {"paths": [str(raw)], "texts": 2, "left_out_as_dev_text": 0, "windows": 2}
    assert header["distill"] == {"teachers": teachers, "alpha": 0.7, "temperature": 2.0, "text": text}
    assert json.loads((student / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"] == 1
    assert best["dev"]["micro"]["f1"] > 0.5  # the tiny corpus is learnable; a broken loss would not get there
    assert export_bundle(student, tmp_path / "bundle", "--quantize", "none") == 0


def test_unlabelled_text_from_the_dev_documents_is_left_out(tiny_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """Other corpora quote sentences of the same abstracts: a dev document's text, even teacher-labelled,
    must not reach the student, or its dev score is not a held-out score."""
    from train.data import load_documents

    base, corpus, teacher = tiny_runs
    config = tiny_train_config(base, corpus, tmp_path / "s", teacher=[str(teacher)], distill_text=[str(tmp_path / "raw.txt")])
    dev_text = load_documents(config)[1][0].text
    (tmp_path / "raw.txt").write_text(f"{dev_text}\nkinase in the cells .\n", encoding="utf-8")
    train(config)
    header = json.loads((tmp_path / "s" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert header["distill"]["text"]["texts"] == 1
    assert header["distill"]["text"]["left_out_as_dev_text"] == 1


def test_unlabelled_text_needs_a_teacher(tiny_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, corpus, _ = tiny_runs
    with pytest.raises(ValueError, match="needs a --teacher"):
        tiny_train_config(base, corpus, tmp_path / "s", distill_text=[str(corpus)])


def test_the_teacher_must_share_labels_and_vocabulary(tiny_runs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, corpus, teacher = tiny_runs
    config = json.loads((teacher / "config.json").read_text(encoding="utf-8"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**config, "id2label": {"0": "O", "1": "B-x", "2": "I-x"}}), encoding="utf-8")
    with pytest.raises(ValueError, match="has labels"):
        train(tiny_train_config(base, corpus, tmp_path / "s", teacher=[str(other)]))


def test_soft_labels_are_distributions(tiny_runs: tuple[Path, Path, Path]) -> None:
    from transformers import AutoTokenizer

    from service.decoding.windows import TextEncoder, WindowConfig
    from train.align import LabelPolicy, build_features, label_list
    from train.data import read_all
    from train.distill import teacher_probabilities

    base, corpus, teacher = tiny_runs
    docs = read_all([str(corpus)], {}, " ")
    labels = label_list(docs)
    tokenizer = AutoTokenizer.from_pretrained(base)
    features, _ = build_features(
        docs, TextEncoder(tokenizer.backend_tokenizer), {k: i for i, k in enumerate(labels)}, WindowConfig(24, 6), LabelPolicy.FIRST
    )
    probabilities = teacher_probabilities([str(teacher)], features, labels, tokenizer.backend_tokenizer.get_vocab(), 2.0)
    assert [len(p) for p in probabilities] == [len(f.input_ids) for f in features]
    assert np.allclose(np.concatenate(probabilities).sum(-1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def crf_teachers(tiny_runs: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A CRF checkpoint and its bundle."""
    base, corpus, _ = tiny_runs
    root = tmp_path_factory.mktemp("crf-teacher")
    train(tiny_train_config(base, corpus, root / "ckpt", epochs=3, head="crf", crf_learning_rate=0.1))
    assert export_bundle(root / "ckpt", root / "bundle", "--quantize", "none") == 0
    return [str(root / "ckpt"), str(root / "bundle")]


def test_a_linear_student_refuses_a_crf_teacher(tiny_runs: tuple[Path, Path, Path], crf_teachers: list[str], tmp_path: Path) -> None:
    base, corpus, _ = tiny_runs
    with pytest.raises(ValueError, match="train the student --head crf"):
        train(tiny_train_config(base, corpus, tmp_path / "s", teacher=crf_teachers[:1]))


def test_a_crf_student_learns_the_crf_teachers_marginals_and_exports(
    tiny_runs: tuple[Path, Path, Path], crf_teachers: list[str], tmp_path: Path
) -> None:
    """CRF teachers (a checkpoint and its bundle) -> a one-layer CRF student, with unlabelled text too."""
    from transformers import AutoTokenizer

    from service.bundle_format import read_serving
    from service.decoding.windows import TextEncoder, WindowConfig
    from train.align import LabelPolicy, build_features, label_list
    from train.data import read_all
    from train.distill import teacher_word_marginals

    base, corpus, _ = tiny_runs
    teachers, teacher = crf_teachers, Path(crf_teachers[0])

    docs = read_all([str(corpus)], {}, " ")
    labels = label_list(docs)
    tokenizer = AutoTokenizer.from_pretrained(base)
    window = WindowConfig(24, 6)
    label2id = {k: i for i, k in enumerate(labels)}
    features, _ = build_features(docs, TextEncoder(tokenizer.backend_tokenizer), label2id, window, LabelPolicy.FIRST)
    marginals = teacher_word_marginals(teachers, features, labels, tokenizer.backend_tokenizer.get_vocab(), 1.0)
    assert [len(m) for m in marginals] == [int((f.labels != IGNORE).sum()) for f in features]  # one row per word
    assert np.allclose(np.concatenate(marginals).sum(-1), 1.0, atol=1e-5)
    assert read_serving(teacher).transitions is not None  # so these are CRF marginals, not an emission softmax

    raw = tmp_path / "raw.txt"
    raw.write_text("the myc gene binds p53 .\nkinase in the cells .\n", encoding="utf-8")
    # alpha 1: no gold term, so all the student learns comes through the marginals' KL
    settings = {"epochs": 5, "teacher": teachers, "distill_alpha": 1.0, "student_layers": 1, "distill_text": [str(raw)]}
    student = tmp_path / "student"
    best = train(tiny_train_config(base, corpus, student, head="crf", crf_learning_rate=0.1, **settings))
    assert best["dev"]["micro"]["f1"] > 0.5  # learnable from the teacher alone; a broken KL would not get there
    assert read_serving(student).transitions is not None
    assert export_bundle(student, tmp_path / "bundle", "--quantize", "none") == 0
