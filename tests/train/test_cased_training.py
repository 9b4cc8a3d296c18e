"""``--token-types case``: the cased channel through training, distillation from an uncased teacher,
the checkpoint, and export, on the tiny BERT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("optimum")

from tiny_bert import export_bundle, make_base_model, tiny_train_config  # noqa: E402

from service.bundle_format import read_serving  # noqa: E402
from service.decoding.token_types import TokenTypes, strip, unpack  # noqa: E402
from train.finetune import train  # noqa: E402

# A protein is written in upper case (P53), the same word in lower case is not one, in the same
# context and in either order: only the cased channel tells them apart (the tokenizer lowercases both).
SENTENCES = ("the P53 binds . the p53 binds .", "the p53 binds . the P53 binds .")


def make_cased_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        text = SENTENCES[i % 2]
        start = text.index("P53")
        (folder / f"d{i}.txt").write_text(text, encoding="utf-8")
        (folder / f"d{i}.ann").write_text(f"T1\tprotein {start} {start + 3}\tP53\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def uncased_teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("types")
    base, corpus = make_base_model(root / "base"), make_cased_corpus(root / "corpus")
    train(tiny_train_config(base, corpus, root / "teacher", epochs=2, head="crf", crf_learning_rate=0.1))
    assert export_bundle(root / "teacher", root / "teacher-bundle", "--quantize", "none") == 0
    return base, corpus, root / "teacher-bundle"


def test_a_cased_student_of_an_uncased_teacher_learns_case_and_exports_it(uncased_teacher: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, corpus, teacher = uncased_teacher
    student = tmp_path / "student"
    settings = {"epochs": 8, "head": "crf", "crf_learning_rate": 0.1, "teacher": [str(teacher)], "distill_alpha": 0.3}
    best = train(tiny_train_config(base, corpus, student, token_types="case", **settings))
    header = json.loads((student / "metrics.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert header["token_types"] == "case"
    assert read_serving(student).token_types is TokenTypes.CASE
    # only case separates the protein from the word that is not one: the same run uncased cannot pass 2/3
    assert best["dev"]["micro"]["f1"] > 0.9
    uncased = train(tiny_train_config(base, corpus, tmp_path / "uncased", token_types="none", **settings))
    assert uncased["dev"]["micro"]["f1"] < 0.7
    from transformers import AutoModelForTokenClassification

    embeddings = AutoModelForTokenClassification.from_pretrained(student).base_model.embeddings.token_type_embeddings.weight
    assert not torch.allclose(embeddings[0], embeddings[1])  # type 1 started as type 0 and learned

    bundle = tmp_path / "bundle"
    assert export_bundle(student, bundle, "--quantize", "none") == 0  # its parity check runs the cased rows through both
    assert read_serving(bundle).token_types is TokenTypes.CASE


def test_an_uncased_run_stays_uncased(uncased_teacher: tuple[Path, Path, Path]) -> None:
    _, _, teacher = uncased_teacher
    assert read_serving(teacher).token_types is TokenTypes.NONE
    assert "token_types" not in json.loads((teacher / "serving.json").read_text(encoding="utf-8"))


def test_the_uncased_teacher_reads_the_ids_without_types(uncased_teacher: tuple[Path, Path, Path]) -> None:
    """The student's windows carry types the teacher never learned: it must be fed the bare ids."""
    from transformers import AutoTokenizer

    from service.decoding.windows import TextEncoder, WindowConfig
    from train.align import Feature, LabelPolicy, build_features, label_list
    from train.data import read_all
    from train.distill import teacher_word_marginals

    base, corpus, teacher = uncased_teacher
    docs = read_all([str(corpus)], {}, " ")
    labels = label_list(docs)
    tokenizer = AutoTokenizer.from_pretrained(base)
    encoder = TextEncoder(tokenizer.backend_tokenizer, TokenTypes.CASE)
    features, _ = build_features(docs[:2], encoder, {k: i for i, k in enumerate(labels)}, WindowConfig(24, 6), LabelPolicy.FIRST)
    assert any(unpack(f.input_ids)[1].any() for f in features)
    vocabulary = tokenizer.backend_tokenizer.get_vocab()
    cased = teacher_word_marginals([str(teacher)], features, labels, vocabulary, 1.0, TokenTypes.CASE)
    bare = teacher_word_marginals([str(teacher)], [Feature(strip(f.input_ids), f.labels) for f in features], labels, vocabulary, 1.0)
    assert all(np.array_equal(a, b) for a, b in zip(cased, bare))


def test_a_cased_teacher_cannot_teach_an_uncased_student(uncased_teacher: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, corpus, teacher = uncased_teacher
    cased = tmp_path / "cased-teacher"
    train(tiny_train_config(base, corpus, cased, head="crf", crf_learning_rate=0.1, token_types="case"))
    with pytest.raises(ValueError, match="reads token types 'case'"):
        train(tiny_train_config(base, corpus, tmp_path / "s", head="crf", teacher=[str(cased)], token_types="none"))
    # continuing the cased checkpoint keeps its types, and its learned type 1, unless told otherwise
    from transformers import AutoModelForTokenClassification

    from train.data import load_documents
    from train.task import prepare

    config = tiny_train_config(cased, corpus, tmp_path / "continued", head="crf", crf_learning_rate=0.1)
    learned = AutoModelForTokenClassification.from_pretrained(cased).base_model.embeddings.token_type_embeddings.weight
    task = prepare(config, *load_documents(config))
    assert task.encoder.token_types is TokenTypes.CASE
    assert torch.equal(task.model.base_model.embeddings.token_type_embeddings.weight, learned)
    train(config)
    assert read_serving(tmp_path / "continued").token_types is TokenTypes.CASE
    # commands that mark no types refuse a base that reads them
    from train.task import refuse_token_types

    with pytest.raises(ValueError, match="does not mark"):
        refuse_token_types(str(cased), "pretrain")


def test_type_one_starts_as_type_zero(uncased_teacher: tuple[Path, Path, Path], tmp_path: Path) -> None:
    """The cased network starts as the uncased one: BERT's pretrained type 1 means "sentence B"."""
    from train.data import load_documents
    from train.task import prepare

    base, corpus, _ = uncased_teacher
    config = tiny_train_config(base, corpus, tmp_path / "s", token_types="case")
    weight = prepare(config, *load_documents(config)).model.base_model.embeddings.token_type_embeddings.weight
    assert torch.equal(weight[0], weight[1])
    config = tiny_train_config(base, corpus, tmp_path / "s", token_types="none")
    weight = prepare(config, *load_documents(config)).model.base_model.embeddings.token_type_embeddings.weight
    assert not torch.equal(weight[0], weight[1])  # an uncased run leaves the base's embeddings as they are
