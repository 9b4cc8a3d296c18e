"""PubTator: ``PMID|t|title`` and ``PMID|a|abstract`` lines, then one tab-separated line per
annotation (``PMID start end mention type id [more columns]``) or relation (``PMID type id id``),
a blank line between documents. Offsets count over ``title + " " + abstract``.

Title and abstract become two passages (abstract offset = title length + 1). Writing a document
with more passages puts the first on the ``t`` line and joins the rest with spaces on the ``a``
line; line breaks inside a passage are written as spaces (same length, offsets unchanged).
"""

from __future__ import annotations

import re

from service.documents.model import Annotation, Collection, Document, DocumentError, Location, Passage, Relation
from service.documents.offsets import OffsetUnit, from_units, length, to_units

_EXTRA = "pubtator_columns"  # columns after the identifier, tab-joined (e.g. CDR's composite mentions)
_PLAIN = ("type", "identifier", _EXTRA)
_DIGITS = re.compile(r"[0-9]+")
_BREAKS = str.maketrans({"\t": " ", "\r": " ", "\n": " "})
# Other infons (the score and model of an annotation this service added) travel in one last column
# as key=value pairs: PubTator tools read the first six columns and pass the rest along.
_INFONS = re.compile(r"^[\w.-]+=[^;\t]*(?:;[\w.-]+=[^;\t]*)*$")


def _encode_infons(infons: dict[str, str]) -> str:
    return ";".join(f"{k}={v}" for k, v in infons.items() if k not in _PLAIN).translate(_BREAKS)


def _decode_infons(column: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in column.split(";"))


def _passage_at(passages: list[Passage], offset: int) -> Passage:
    return max((p for p in passages if p.offset <= offset), key=lambda p: p.offset, default=passages[0])


def read_pubtator(data: bytes | str, unit: OffsetUnit = OffsetUnit.CODEPOINT, what: str = "PubTator") -> Collection:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    documents: list[Document] = []
    current: Document | None = None
    n_relations = 0
    for number, line in enumerate(_lines(text), 1):
        where = f"{what} line {number}"
        if not line.strip():
            current = None
            continue
        head = line.split("|", 2)
        if len(head) == 3 and head[1] in ("t", "a") and "\t" not in head[0]:
            pmid, kind, body = head
            if current is None or current.id != pmid:
                current = Document(pmid, [])
                documents.append(current)
                n_relations = 0
            if kind == "t" and current.passages:
                raise DocumentError(f"{where}: a title line for document {pmid} after its title or abstract (title first, once)")
            offset = 0 if kind == "t" else sum(length(p.text, unit) + 1 for p in current.passages)
            current.passages.append(Passage(offset, body, {"type": "title" if kind == "t" else "abstract"}))
            continue
        fields = line.split("\t")
        if current is None or fields[0] != current.id or not current.passages:
            raise DocumentError(f"{where}: an annotation line before its document's title and abstract lines (or for another PMID)")
        if len(fields) >= 5 and _DIGITS.fullmatch(fields[1]) and _DIGITS.fullmatch(fields[2]):
            start, end = int(fields[1]), int(fields[2])
            passage = _passage_at(current.passages, start)
            try:
                loc = Location(from_units(passage.text, start - passage.offset, unit), from_units(passage.text, end - passage.offset, unit))
            except ValueError as exc:
                raise DocumentError(f"{where}: offsets {start}-{end} are not inside the document's text: {exc}") from None
            if loc.end < loc.start:
                raise DocumentError(f"{where}: end {end} before start {start}")
            infons = {"type": fields[4]}
            if len(fields) > 5:
                infons["identifier"] = fields[5]
            extra = fields[6:]
            encoded = _decode_infons(extra.pop()) if extra and _INFONS.match(extra[-1]) else {}
            if extra:
                infons[_EXTRA] = "\t".join(extra)
            infons.update(encoded)
            annotation_id = str(sum(len(p.annotations) for p in current.passages))
            passage.annotations.append(Annotation(annotation_id, infons, [loc], fields[3]))
        elif len(fields) >= 4 and not fields[1].strip().isdigit():
            infons = {"relation": fields[1], **{f"arg{i}": value for i, value in enumerate(fields[2:], 1)}}
            current.relations.append(Relation(f"R{n_relations}", infons))
            n_relations += 1
        else:
            raise DocumentError(
                f"{where}: neither a title/abstract line, an annotation (PMID start end mention type [id]) nor a relation (PMID type id id)"
            )
    return Collection(documents)


def write_pubtator(collection: Collection, unit: OffsetUnit = OffsetUnit.CODEPOINT) -> bytes:
    out: list[str] = []
    for document in collection.documents:
        if not document.passages:
            continue
        texts = [p.text.replace("\r", " ").replace("\n", " ") for p in document.passages]
        title, abstract = texts[0], " ".join(texts[1:])
        out.append(f"{document.id}|t|{title}")
        out.append(f"{document.id}|a|{abstract}")
        base = 0  # each passage's start in title + " " + abstract, in the unit
        rows = []
        for passage, text in zip(document.passages, texts):
            for a in passage.annotations:
                start, end = base + to_units(text, a.start, unit), base + to_units(text, a.end, unit)
                identifier = a.infons.get("identifier") or a.infons.get("MESH", "")
                columns = [document.id, str(start), str(end), a.text.translate(_BREAKS), a.type]
                encoded = _encode_infons(a.infons)
                if identifier or _EXTRA in a.infons or encoded:
                    columns.append(identifier)
                if _EXTRA in a.infons:
                    columns.append(a.infons[_EXTRA])
                if encoded:
                    columns.append(encoded)
                rows.append((start, end, "\t".join(columns)))
            base += length(text, unit) + 1
        out.extend(row for _, _, row in sorted(rows, key=lambda r: (r[0], r[1])))
        for relation in document.relations:
            args = [v for k, v in relation.infons.items() if k != "relation"]
            out.append("\t".join([document.id, relation.infons.get("relation", ""), *args]))
        out.append("")
    return ("\n".join(out) + ("\n" if out else "")).encode("utf-8")


def _lines(text: str) -> list[str]:
    """Lines split on \\n only (a trailing \\r dropped): str.splitlines() would also split inside a
    text at U+2028, U+0085 or a form feed, which JSON and PubTator carry unescaped."""
    return [line.removesuffix("\r") for line in text.split("\n")]
