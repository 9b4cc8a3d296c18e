"""Pick the reader by what the path is, and print the tag-cleaning summary for column files."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from service.corpora.brat import parse_brat, read_brat
from service.corpora.columns import parse_columns, read_columns
from service.corpora.document import Document, Span
from service.corpora.documents import to_gold
from service.corpora.jsonl import parse_jsonl, read_jsonl
from service.documents.formats import Format, read_documents, sniff


def read_corpus(path: str | Path, tag_map: dict[str, str] | None = None, separator: str = " ") -> list[Document]:
    """A folder of ``.txt``/``.ann`` is brat; BioC XML/JSON and PubTator files (by content) are
    documents, one gold text per passage; ``.jsonl``/``.json`` is JSON Lines; else columns."""
    path = Path(path)
    if path.is_dir():
        if any(path.glob("*.ann")):
            return read_brat(path)
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        return [d for f in files for d in read_corpus(f, tag_map, separator)]
    if path.suffix in _DOCUMENT_SUFFIXES and (fmt := _document_format(path)) is not None:
        return to_gold(read_documents(path.read_bytes(), fmt, what=str(path)))
    if path.suffix in (".jsonl", ".json"):
        return read_jsonl(path, separator)
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    docs = read_columns(path, tag_map, separator, (before, after))
    if before != after:
        print(f"tag counts in {path} before cleaning: {dict(before.most_common())}")
        print(f"tag counts in {path} after cleaning:  {dict(after.most_common())}")
    return docs


_DOCUMENT_SUFFIXES = (".xml", ".json", ".txt", ".pubtator", ".gz")


def _document_format(path: Path) -> Format | None:
    """BioC XML/JSON, PubTator or PubMed XML by content; None for other files (JSON Lines, columns)."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    fmt = sniff(head, path.name)
    return fmt if fmt in (Format.BIOC_XML, Format.BIOC_JSON, Format.PUBTATOR, Format.PUBMED) else None


def parse_corpus(
    kind: str,
    content: str = "",
    brat: list[tuple[str, str, str]] | None = None,
    tag_map: dict[str, str] | None = None,
    separator: str = " ",
) -> list[Document]:
    """Gold documents sent over HTTP: ``brat`` as (id, text, ann) triples, ``jsonl`` or
    ``columns`` as the file's content. The same parsers as the files on disk."""
    if kind == "brat":
        return [parse_brat(doc_id, text, ann, doc_id) for doc_id, text, ann in brat or []]
    if kind == "jsonl":
        return parse_jsonl(content, "request", separator)
    if kind == "columns":
        return parse_columns(content, "request", tag_map, separator)
    if kind in ("bioc_xml", "bioc_json", "pubtator"):
        return to_gold(read_documents(content.encode("utf-8"), Format(kind), what="request"))
    raise ValueError(f"unknown format {kind!r}")


def split_dev(docs: list[Document], fraction: float, seed: int) -> tuple[list[Document], list[Document]]:
    """Carve a dev split by document with a fixed seed."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_dev = max(1, int(round(len(docs) * fraction)))
    dev_ids = set(order[:n_dev])
    return [d for i, d in enumerate(docs) if i not in dev_ids], [d for i, d in enumerate(docs) if i in dev_ids]


def join_sentences(docs: list[Document], per_document: int, separator: str = " ") -> list[Document]:
    """Consecutive column-file sentences joined ``per_document`` at a time into one document.

    Column corpora (NCBI-disease, BC5CDR, BC2GM, LINNAEUS) are abstracts cut into sentences, in
    order. A model trained on sentences alone only ever sees windows of one sentence; served
    abstracts fill 128-token windows, and a head trained that way mis-tags them badly (measured:
    "Effects of" as a Disease). Joining restores the neighbouring text, so training windows look
    like the ones the service runs. Documents without ``token_offsets`` (brat, BioC) are real
    documents already and pass through unchanged; ``per_document`` <= 1 changes nothing.
    """
    if per_document <= 1:
        return docs
    out: list[Document] = []
    group: list[Document] = []

    def flush() -> None:
        if group:
            out.append(_joined(group, separator))
            group.clear()

    for doc in docs:
        if not doc.token_offsets:
            flush()
            out.append(doc)
            continue
        group.append(doc)
        if len(group) == per_document:
            flush()
    flush()
    return out


def _joined(group: list[Document], separator: str) -> Document:
    if len(group) == 1:
        return group[0]
    texts: list[str] = []
    spans: list[Span] = []
    offsets: list[tuple[int, int]] = []
    cursor = 0
    for doc in group:
        texts.append(doc.text)
        spans.extend(Span(s.start + cursor, s.end + cursor, s.label) for s in doc.spans)
        offsets.extend((a + cursor, b + cursor) for a, b in doc.token_offsets)
        cursor += len(doc.text) + len(separator)
    return Document(f"{group[0].id}+{len(group) - 1}", separator.join(texts), tuple(spans), tuple(offsets))
