"""What a run trains and scores on: corpora read, the dev split, seeded subsets, folds, held-out texts.

Every seeded choice here is a function of the run's seed alone, so a resumed run, an export's
parity check and ``bioner evaluate --dev-fraction`` all cut the same documents. The dev split
itself is ``service.corpora.load.split_dev``, shared with the torch-free service.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from service.corpora import Document, read_corpus
from service.corpora.load import join_sentences, split_dev

if TYPE_CHECKING:  # train.config imports train.corpus_spec, which reads corpora through this module
    from train.config import TrainConfig

Item = TypeVar("Item")


def read_all(paths: Sequence[str], tag_map: dict[str, str] | None, separator: str, join: int = 1) -> list[Document]:
    """Every path's documents; column-file sentences joined ``join`` at a time, never across files."""
    return [d for p in paths for d in join_sentences(read_corpus(p, tag_map, separator), join, separator)]


def seeded_order(n: int, seed: int) -> list[int]:
    """``0..n-1`` shuffled by ``seed``: the order folds and held-out texts are cut from."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def subsample(docs: list[Document], fraction: float, seed: int) -> list[Document]:
    """A seeded share of the documents, in their original order."""
    if fraction >= 1.0:
        return docs
    keep = set(random.Random(seed + 1).sample(range(len(docs)), max(1, int(round(len(docs) * fraction)))))
    return [d for i, d in enumerate(docs) if i in keep]


def load_documents(config: TrainConfig) -> tuple[list[Document], list[Document]]:
    """(train, dev): ``--dev`` files, or a dev share carved from ``--train``; then the ``--train-fraction`` subset."""
    train_docs = read_all(config.train, config.tag_map, config.separator, config.join_sentences)
    if config.dev:
        dev_docs = read_all(config.dev, config.tag_map, config.separator, config.join_sentences)
    else:
        train_docs, dev_docs = split_dev(train_docs, config.dev_fraction, config.split_seed)
    return subsample(train_docs, config.train_fraction, config.seed), dev_docs


def fold_splits(docs: list[Document], k: int, seed: int) -> list[tuple[list[Document], list[Document]]]:
    """``k`` (train, dev) pairs; every document is in exactly one dev fold."""
    if not 2 <= k <= len(docs):
        raise ValueError(f"--folds must be between 2 and the number of documents ({len(docs)}), not {k}")
    fold_of = {doc_index: n % k for n, doc_index in enumerate(seeded_order(len(docs), seed))}
    return [([d for i, d in enumerate(docs) if fold_of[i] != f], [d for i, d in enumerate(docs) if fold_of[i] == f]) for f in range(k)]


def held_out_split(texts: Sequence[Item], fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """(held out, rest), both in shuffled order; at least one text is held out."""
    order = seeded_order(len(texts), seed)
    n_held = max(1, int(round(len(texts) * fraction)))
    return [texts[i] for i in order[:n_held]], [texts[i] for i in order[n_held:]]


def without_texts_of(texts: Sequence[str], documents: Sequence[str], shortest: int = 20) -> list[str]:
    """``texts`` less every one that shares text with one of ``documents``: equal to one, part of one
    (training may join a column file's sentences into one document), or holding one (a raw abstract
    around a dev sentence). Both sides are compared without whitespace: column files join their own
    tokens with spaces, and two corpora tokenise one sentence differently (``NF-kappa B (`` against
    ``NF - kappa B (``). Containment needs ``shortest`` characters, so a short heading is not dev text
    by chance."""

    def norm(text: str) -> str:
        return "".join(text.split())

    docs = [norm(d) for d in documents]
    exact, whole = set(docs), "\n".join(docs)
    long_docs = [d for d in docs if len(d) >= shortest]

    def shared(text: str) -> bool:
        if text in exact:
            return True
        return len(text) >= shortest and (text in whole or any(d in text for d in long_docs))

    return [t for t in texts if not shared(norm(t))]


def read_texts(path: str | Path, separator: str = " ") -> list[str]:
    """Raw texts: ``.txt`` files give one text per non-empty line; anything else goes through the NER readers."""
    path = Path(path)
    if path.is_dir() and not any(path.glob("*.ann")):
        return [t for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith(".") for t in read_texts(f, separator)]
    if path.is_file() and path.suffix == ".txt":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [d.text for d in read_corpus(path, None, separator) if d.text.strip()]
