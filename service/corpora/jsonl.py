"""JSON Lines: ``{"tokens": [...], "ner_tags": [...]}`` or ``{"text": ..., "entities": [...]}``.

Entities are ``{"start", "end", "label"}`` with character offsets, end exclusive.
"""

from __future__ import annotations

import json
from pathlib import Path

from service.corpora.document import Document, Span
from service.decoding.aggregate import decode_tags
from service.decoding.labels import split_label


def read_jsonl(path: Path, separator: str = " ") -> list[Document]:
    return parse_jsonl(path.read_text(encoding="utf-8"), str(path), separator)


def parse_jsonl(content: str, where: str, separator: str = " ") -> list[Document]:
    """JSON Lines content (a file, or a string sent to ``/evaluate``); ``where`` names it in errors."""
    path = Path(where)
    docs = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{number}: not JSON: {exc}") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: each line must be a JSON object")
        doc_id = str(record.get("id", f"{path.name}:{number}"))
        if "text" in record:
            spans = tuple(Span(int(e["start"]), int(e["end"]), str(e["label"])) for e in record.get("entities", []))
            for span in spans:
                if not 0 <= span.start < span.end <= len(record["text"]):
                    raise ValueError(f"{path}:{number}: entity {span} outside the text")
            docs.append(Document(doc_id, record["text"], spans))
        elif "tokens" in record and "ner_tags" in record:
            docs.append(_from_tokens(doc_id, record["tokens"], record["ner_tags"], separator))
        else:
            raise ValueError(f"{path}:{number}: needs 'text'+'entities' or 'tokens'+'ner_tags'")
    return docs


def _from_tokens(doc_id: str, tokens: list[str], tags: list[str], separator: str) -> Document:
    if len(tokens) != len(tags):
        raise ValueError(f"{doc_id}: {len(tokens)} tokens but {len(tags)} tags")
    offsets, cursor = [], 0
    for token in tokens:
        offsets.append((cursor, cursor + len(token)))
        cursor += len(token) + len(separator)
    parts = [split_label(str(t)) for t in tags]
    spans = tuple(Span(offsets[a][0], offsets[b - 1][1], kind) for a, b, kind in decode_tags([p for p, _ in parts], [k for _, k in parts]))
    return Document(doc_id, separator.join(tokens), spans, tuple(offsets))
