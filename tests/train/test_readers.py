from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.corpora import read_corpus
from service.corpora.columns import MalformedTagError, parse_tag_map
from service.corpora.load import join_sentences


def test_brat_reads_offsets_and_reports_overlaps(tmp_path: Path) -> None:
    (tmp_path / "d1.txt").write_text("IL-2 gene activates NF-κB in T cells.", encoding="utf-8")
    (tmp_path / "d1.ann").write_text(
        "T1\tDNA 0 9\tIL-2 gene\nT2\tprotein 0 4\tIL-2\nT3\tprotein 20 25\tNF-κB\nT4\tcell_type 29 36\tT cells\n"
        "T5\tprotein 0 2;5 9\tIL gene\n",
        encoding="utf-8",
    )
    [doc] = read_corpus(tmp_path)
    assert [(s.start, s.end, s.label) for s in doc.spans] == [(0, 9, "DNA"), (20, 25, "protein"), (29, 36, "cell_type")]
    assert doc.text[20:25] == "NF-κB"


def test_columns_schemes_and_cleaning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "un.tsv"
    path.write_text("The\tO\nUnited\tI-ORG\nNations\tI-I-MISC\nsaid\t0\n\nMr\tI-PER\nBan\tVMISC\n", encoding="utf-8")
    with pytest.raises(MalformedTagError, match=r"un.tsv:3: malformed tag 'I-I-MISC'"):
        read_corpus(path)
    docs = read_corpus(path, parse_tag_map("I-I-MISC=I-ORG,0=O,VMISC=I-PER"))
    assert [(d.text[s.start : s.end], s.label) for d in docs for s in d.spans] == [("United Nations", "ORG"), ("Mr Ban", "PER")]
    out = capsys.readouterr().out
    assert "before cleaning" in out and "'I-I-MISC': 1" in out


def test_columns_bioes_and_space_separated(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("a B-X\nb E-X\nc S-Y\nd O\n", encoding="utf-8")
    [doc] = read_corpus(path)
    assert [(doc.text[s.start : s.end], s.label) for s in doc.spans] == [("a b", "X"), ("c", "Y")]
    assert doc.token_offsets == ((0, 1), (2, 3), (4, 5), (6, 7))


def test_chinese_characters_joined_without_spaces(tmp_path: Path) -> None:
    path = tmp_path / "cn.bio"
    path.write_text("蛋 B-protein\n白 I-protein\n在 O\n", encoding="utf-8")
    [doc] = read_corpus(path, separator="")
    assert doc.text == "蛋白在" and [(s.start, s.end) for s in doc.spans] == [(0, 2)]


def test_jsonl_both_shapes(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(
        json.dumps({"tokens": ["p53", "binds", "DNA"], "ner_tags": ["B-protein", "O", "B-DNA"]})
        + "\n"
        + json.dumps({"id": "q", "text": "Café p53", "entities": [{"start": 5, "end": 8, "label": "protein"}]})
        + "\n",
        encoding="utf-8",
    )
    first, second = read_corpus(path)
    assert [(first.text[s.start : s.end], s.label) for s in first.spans] == [("p53", "protein"), ("DNA", "DNA")]
    assert second.id == "q" and second.text[5:8] == "p53"


def test_jsonl_rejects_out_of_range_entities(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps({"text": "abc", "entities": [{"start": 2, "end": 9, "label": "X"}]}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="outside the text"):
        read_corpus(path)


def test_real_jnlpba_loads(shared_data: Path) -> None:
    docs = read_corpus(shared_data / "jnlpba" / "train")
    assert len(docs) == 2000
    assert all(d.text[s.start : s.end].strip() for d in docs[:50] for s in d.spans)


def test_join_sentences_keeps_every_span_on_its_text(tmp_path: Path) -> None:
    path = tmp_path / "ncbi.tsv"
    sentences = [
        "Familial\tB-Disease\nadenomatous\tI-Disease\npolyposis\tI-Disease\n.\tO\n",
        "The\tO\nAPC\tO\ngene\tO\n.\tO\n",
        "Breast\tB-Disease\ncancer\tI-Disease\nrisk\tO\n",
    ]
    path.write_text("\n".join(sentences), encoding="utf-8")
    alone = read_corpus(path)
    joined = join_sentences(alone, 2)
    assert [len(d.token_offsets) for d in joined] == [8, 3]
    assert joined[0].text == "Familial adenomatous polyposis . The APC gene ."
    found = [(d.text[s.start : s.end], s.label) for d in joined for s in d.spans]
    assert found == [(d.text[s.start : s.end], s.label) for d in alone for s in d.spans]
    assert [joined[0].text[a:b] for a, b in joined[0].token_offsets][4:] == ["The", "APC", "gene", "."]
    assert join_sentences(alone, 1) == alone


def test_join_sentences_leaves_real_documents_alone(tmp_path: Path) -> None:
    (tmp_path / "d1.txt").write_text("IL-2 gene.", encoding="utf-8")
    (tmp_path / "d1.ann").write_text("T1\tDNA 0 9\tIL-2 gene\n", encoding="utf-8")
    docs = read_corpus(tmp_path)
    assert join_sentences(docs * 3, 8) == docs * 3


def test_bioner_train_joins_sentences_within_each_file(tmp_path: Path) -> None:
    """``bioner train --join-sentences`` trains and scores on documents, never gluing two files together."""
    from train.config import TrainConfig
    from train.data import load_documents

    for name in ("a", "b"):
        (tmp_path / f"{name}.tsv").write_text("\n".join(f"{name}{i}\tB-Disease\n.\tO\n" for i in range(3)), encoding="utf-8")
    files = [str(tmp_path / "a.tsv"), str(tmp_path / "b.tsv")]
    config = TrainConfig(train=files[:1], dev=files[1:], output="", base_model="", join_sentences=2)
    train, dev = load_documents(config)
    assert [d.text for d in train] == ["a0 . a1 .", "a2 ."] and [d.text for d in dev] == ["b0 . b1 .", "b2 ."]
    assert [len(d.spans) for d in train] == [2, 1]
    alone, _ = load_documents(TrainConfig(train=files, output="", base_model="", dev_fraction=0.5))
    assert len(alone) == 3 and all(d.text.count(" . ") == 0 for d in alone)  # the default: sentences alone


def test_dev_seed_keeps_the_dev_documents_of_another_seed(tmp_path: Path) -> None:
    from train.config import TrainConfig
    from train.data import load_documents

    (tmp_path / "c.tsv").write_text("\n".join(f"w{i}\tB-Disease\n.\tO\n" for i in range(40)), encoding="utf-8")
    config = {"train": [str(tmp_path / "c.tsv")], "output": "", "base_model": "", "dev_fraction": 0.25}
    dev_of = {seed: [d.text for d in load_documents(TrainConfig(**config, seed=seed))[1]] for seed in (7, 13)}
    assert dev_of[7] != dev_of[13]  # otherwise the test cannot tell the seeds apart
    pinned_train, pinned_dev = load_documents(TrainConfig(**config, seed=7, dev_seed=13))
    assert [d.text for d in pinned_dev] == dev_of[13]
    assert not {d.text for d in pinned_train} & set(dev_of[13])
