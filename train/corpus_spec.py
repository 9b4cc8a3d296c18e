"""What ``train-joint --corpora`` names: each head, the files it learns from and the labels it keeps.

A head is usually one corpus (``ncbi=PATH``). Corpora that annotate the same type can feed one
head (``disease=NCBI,BC5CDR@Disease``), and a corpus can give a type a head of its own
(``chemical=BC5CDR@Chemical``): ``@LABEL+LABEL`` keeps those types of that source and reads every
other span as outside. Each source is split into train and dev on its own with the run's seed, so
a document lands in the same split whichever head reads it, and each source's dev can be scored
apart (issue #12: does one disease head for NCBI-disease and BC5CDR beat one head each?).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from service.corpora import Document
from service.corpora.load import split_dev
from train.data import read_all

Split = tuple[list[Document], list[Document]]


@dataclass(frozen=True)
class Source:
    path: str
    labels: tuple[str, ...] = ()  # empty: every type the file has

    @property
    def key(self) -> str:
        """A short stable name for reports: the file's folder and name, and the kept types."""
        path = Path(self.path)
        short = f"{path.parent.name}/{path.name}" if path.parent.name else path.name
        return short + (f"@{'+'.join(self.labels)}" if self.labels else "")


@dataclass(frozen=True)
class HeadSources:
    name: str
    sources: tuple[Source, ...]


def parse_source(text: str) -> Source:
    path, at, labels = text.partition("@")
    kept = tuple(label for label in labels.split("+") if label)
    if not path or (at and not kept):
        raise ValueError(f"a source is PATH or PATH@LABEL+LABEL, not {text!r}")
    return Source(path, kept)


def parse_heads(specs: Sequence[str]) -> list[HeadSources]:
    """``NAME=SOURCE[,SOURCE...]`` per head; names distinct, a source at most once per head."""
    heads = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if not sep or not name or not rest:
            raise ValueError(f"--corpora takes NAME=PATH[@LABEL+LABEL][,PATH...] per head, not {spec!r}")
        sources = tuple(parse_source(part) for part in rest.split(","))
        if len({s.key for s in sources}) != len(sources):
            raise ValueError(f"head {name!r} names a source twice: {spec!r}")
        heads.append(HeadSources(name, sources))
    names = [h.name for h in heads]
    if not heads or len(set(names)) != len(names):
        raise ValueError(f"--corpora takes distinct head names, got {names}")
    return heads


def keep_labels(docs: list[Document], labels: Sequence[str]) -> list[Document]:
    """The documents with only the spans of ``labels`` (every other span becomes outside)."""
    if not labels:
        return docs
    keep = set(labels)
    return [Document(d.id, d.text, tuple(s for s in d.spans if s.label in keep), d.token_offsets) for d in docs]


def source_splits(head: HeadSources, separator: str, join: int, dev_fraction: float, seed: int) -> dict[str, Split]:
    """Each source's (train, dev), carved as a one-source head would carve that file."""
    out = {}
    for source in head.sources:
        docs = keep_labels(read_all([source.path], None, separator, join), source.labels)
        out[source.key] = split_dev(docs, dev_fraction, seed)
    return out


def merged(splits: dict[str, Split]) -> Split:
    """Every source's train documents together, and every source's dev documents together."""
    return [d for train, _ in splits.values() for d in train], [d for _, dev in splits.values() for d in dev]
