"""CoNLL-style column files: ``token<TAB or SPACE>tag``, blank line between sentences.

Accepts IOB2, IOB1, IO and BIOES (the tolerant span decoder reads all of them). A tag that is
none of these is rejected with file, line and tag unless the user maps it with a cleaning rule
(``--tag-map 'I-I-MISC=I-MISC,0=O'``).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from service.corpora.document import Document, Span
from service.decoding.aggregate import decode_tags
from service.decoding.labels import split_label

_VALID = re.compile(r"^(O|[BIESLUM]-[A-Za-z][\w.]*)$")


class MalformedTagError(ValueError):
    pass


def read_columns(
    path: Path,
    tag_map: dict[str, str] | None = None,
    separator: str = " ",
    counts: tuple[Counter[str], Counter[str]] | None = None,
) -> list[Document]:
    """One Document per sentence; ``counts`` (before, after) collects tag counts for the summary."""
    return parse_columns(path.read_text(encoding="utf-8"), str(path), tag_map, separator, counts)


def parse_columns(
    content: str,
    where: str,
    tag_map: dict[str, str] | None = None,
    separator: str = " ",
    counts: tuple[Counter[str], Counter[str]] | None = None,
) -> list[Document]:
    """Column-file content (a file, or a string sent to ``/evaluate``); ``where`` names it in errors."""
    name = Path(where).name
    tag_map = tag_map or {}
    before, after = counts if counts is not None else (Counter(), Counter())
    docs: list[Document] = []
    tokens: list[str] = []
    tags: list[str] = []
    for number, raw in enumerate(content.splitlines(), 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                docs.append(_sentence(f"{name}:{len(docs)}", tokens, tags, separator))
                tokens, tags = [], []
            continue
        token, tag = _split_line(line, where, number)
        before[tag] += 1
        tag = tag_map.get(tag, tag)
        if not _VALID.match(tag):
            raise MalformedTagError(f"{where}:{number}: malformed tag {tag!r} (map it with --tag-map)")
        after[tag] += 1
        tokens.append(token)
        tags.append(tag)
    if tokens:
        docs.append(_sentence(f"{name}:{len(docs)}", tokens, tags, separator))
    return docs


def _split_line(line: str, where: str, number: int) -> tuple[str, str]:
    parts = line.split("\t") if "\t" in line else line.split(" ")
    parts = [p for p in parts if p != ""]
    if len(parts) < 2:
        raise MalformedTagError(f"{where}:{number}: expected 'token<TAB>tag', got {line!r}")
    return parts[0], parts[-1]


def _sentence(doc_id: str, tokens: list[str], tags: list[str], separator: str) -> Document:
    offsets, pieces, cursor = [], [], 0
    for token in tokens:
        offsets.append((cursor, cursor + len(token)))
        pieces.append(token)
        cursor += len(token) + len(separator)
    text = separator.join(pieces)
    parts = [split_label(t) for t in tags]
    spans = tuple(Span(offsets[a][0], offsets[b - 1][1], kind) for a, b, kind in decode_tags([p for p, _ in parts], [k for _, k in parts]))
    return Document(doc_id, text, spans, tuple(offsets))


def parse_tag_map(rules: str | None) -> dict[str, str]:
    """``'I-I-MISC=I-MISC,0=O'`` -> mapping; empty targets are an error."""
    mapping: dict[str, str] = {}
    for rule in filter(None, (r.strip() for r in (rules or "").split(","))):
        source, sep, target = rule.partition("=")
        if not sep or not target:
            raise ValueError(f"tag map rule {rule!r} must look like SOURCE=TARGET")
        mapping[source] = target
    return mapping
