"""Pick the reader by what the path is, and print the tag-cleaning summary for column files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from train.readers.brat import read_brat
from train.readers.columns import read_columns
from train.readers.document import Document
from train.readers.jsonl import read_jsonl


def read_corpus(path: str | Path, tag_map: dict[str, str] | None = None, separator: str = " ") -> list[Document]:
    """A folder of ``.txt``/``.ann`` is brat; ``.jsonl``/``.json`` is JSON Lines; else columns."""
    path = Path(path)
    if path.is_dir():
        if any(path.glob("*.ann")):
            return read_brat(path)
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return [d for f in files for d in read_corpus(f, tag_map, separator)]
    if path.suffix in (".jsonl", ".json"):
        return read_jsonl(path, separator)
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    docs = read_columns(path, tag_map, separator, (before, after))
    if before != after:
        print(f"tag counts in {path} before cleaning: {dict(before.most_common())}")
        print(f"tag counts in {path} after cleaning:  {dict(after.most_common())}")
    return docs
