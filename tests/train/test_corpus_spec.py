"""``train-joint --corpora``: heads fed by several corpora, and types of a corpus kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.corpus_spec import HeadSources, Source, merged, parse_heads, source_splits


def columns(path: Path, sentences: int) -> Path:
    """A column file: even sentences hold a Chemical and a Disease, odd ones a Disease."""
    blocks = []
    for i in range(sentences):
        rows = ["aspirin\tB-Chemical", "causes\tO"] if i % 2 == 0 else ["it\tO", "causes\tO"]
        blocks.append("\n".join([*rows, f"ulcer{i}\tB-Disease", ".\tO"]))
    path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return path


def test_spec_grammar() -> None:
    heads = parse_heads(["disease=a/ncbi/train.tsv,b/cdr/train.tsv@Disease", "chemical=b/cdr/train.tsv@Chemical+Drug", "x=y.tsv"])
    assert heads[0] == HeadSources("disease", (Source("a/ncbi/train.tsv"), Source("b/cdr/train.tsv", ("Disease",))))
    assert heads[1].sources[0].labels == ("Chemical", "Drug")
    assert [s.key for h in heads for s in h.sources] == ["ncbi/train.tsv", "cdr/train.tsv@Disease", "cdr/train.tsv@Chemical+Drug", "y.tsv"]


@pytest.mark.parametrize(
    "specs",
    [["noequals"], ["a=x.tsv", "a=y.tsv"], ["a=x.tsv,x.tsv"], ["a=x.tsv@"], ["=x.tsv"], ["a="], []],
)
def test_bad_specs_are_refused(specs: list[str]) -> None:
    with pytest.raises(ValueError):
        parse_heads(specs)


def test_a_source_is_split_as_alone_and_keeps_only_its_types(tmp_path: Path) -> None:
    ncbi, cdr = columns(tmp_path / "ncbi.tsv", 20), columns(tmp_path / "cdr.tsv", 30)
    (head,) = parse_heads([f"disease={ncbi}@Disease,{cdr}@Disease"])
    splits = source_splits(head, " ", 2, 0.2, 13)
    assert [len(dev) for _, dev in splits.values()] == [2, 3]  # 10 and 15 joined documents, 20% each
    train, dev = merged(splits)
    assert len(train) + len(dev) == 25
    assert {s.label for d in train + dev for s in d.spans} == {"Disease"}  # the Chemical spans read as outside
    assert sum(len(d.spans) for d in train + dev) == 50  # every Disease span kept
    (whole,) = parse_heads([f"cdr={cdr}"])
    cdr_dev = next(iter(source_splits(whole, " ", 2, 0.2, 13).values()))[1]
    assert [d.text for d in cdr_dev] == [d.text for d in splits[f"{tmp_path.name}/cdr.tsv@Disease"][1]]  # same documents either way
