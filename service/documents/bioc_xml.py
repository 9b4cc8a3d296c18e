"""BioC XML (the BioC DTD: collection, document, passage, annotation, location, relation, node)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from service.documents.model import Annotation, Collection, Document, DocumentError, Location, Passage, Relation
from service.documents.offsets import OffsetUnit, from_units, to_units
from service.documents.xmlsafe import parse_xml

_UNWRITABLE = {c: " " for c in [*range(0x20), 0xFFFE, 0xFFFF] if c not in (0x09, 0x0A, 0x0D)}
_DECLARATION = "<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE collection SYSTEM 'BioC.dtd'>\n"


def _text(element: ET.Element, tag: str) -> str:
    child = element.find(tag)
    return (child.text or "") if child is not None else ""


def _infons(element: ET.Element) -> dict[str, str]:
    return {i.get("key", ""): i.text or "" for i in element.findall("infon")}


def _relations(element: ET.Element) -> list[Relation]:
    return [
        Relation(r.get("id", ""), _infons(r), [(n.get("refid", ""), n.get("role", "")) for n in r.findall("node")])
        for r in element.findall("relation")
    ]


def locate(passage: Passage, offset: int, length: int, unit: OffsetUnit, where: str) -> Location:
    """A document-level ``offset``/``length`` in ``unit`` -> code points inside ``passage``."""
    if length < 0:
        raise DocumentError(f"{where}: location {offset}+{length} has a negative length")
    try:
        start = from_units(passage.text, offset - passage.offset, unit)
        end = from_units(passage.text, offset - passage.offset + length, unit)
    except ValueError as exc:
        raise DocumentError(f"{where}: location {offset}+{length} is not inside its passage (offset {passage.offset}): {exc}") from None
    return Location(start, end)


def read_bioc_xml(data: bytes | str, unit: OffsetUnit = OffsetUnit.CODEPOINT, what: str = "BioC XML") -> Collection:
    root = parse_xml(data, what)
    if root.tag != "collection":
        raise DocumentError(f"{what}: the root element is <{root.tag}>, not <collection>")
    documents = []
    for d in root.findall("document"):
        doc_id = _text(d, "id")
        passages = []
        for p in d.findall("passage"):
            if p.find("sentence") is not None:
                raise DocumentError(f"{what}: document {doc_id}: sentence-level BioC is not supported; send passages")
            try:
                offset = int(_text(p, "offset"))
            except ValueError:
                raise DocumentError(f"{what}: document {doc_id}: a passage has no integer <offset>") from None
            passage = Passage(offset, _text(p, "text"), _infons(p), relations=_relations(p))
            for a in p.findall("annotation"):
                where = f"{what}: document {doc_id}, annotation {a.get('id', '?')}"
                try:
                    spans = [(int(loc.get("offset", "")), int(loc.get("length", ""))) for loc in a.findall("location")]
                except ValueError:
                    raise DocumentError(f"{where}: a <location> needs integer offset and length attributes") from None
                locations = [locate(passage, o, n, unit, where) for o, n in spans]
                passage.annotations.append(Annotation(a.get("id", ""), _infons(a), locations, _text(a, "text")))
            passages.append(passage)
        documents.append(Document(doc_id, passages, _infons(d), _relations(d)))
    return Collection(documents, _text(root, "source"), _text(root, "date"), _text(root, "key"), _infons(root))


def _add_infons(parent: ET.Element, infons: dict[str, str]) -> None:
    for key, value in infons.items():
        ET.SubElement(parent, "infon", key=key).text = value


def _add_relations(parent: ET.Element, relations: list[Relation]) -> None:
    for relation in relations:
        r = ET.SubElement(parent, "relation", id=relation.id)
        _add_infons(r, relation.infons)
        for refid, role in relation.nodes:
            ET.SubElement(r, "node", refid=refid, role=role)


def write_bioc_xml(collection: Collection, unit: OffsetUnit = OffsetUnit.CODEPOINT) -> bytes:
    root = ET.Element("collection")
    for tag, value in (("source", collection.source), ("date", collection.date), ("key", collection.key)):
        ET.SubElement(root, tag).text = value
    _add_infons(root, collection.infons)
    for document in collection.documents:
        d = ET.SubElement(root, "document")
        ET.SubElement(d, "id").text = document.id
        _add_infons(d, document.infons)
        for passage in document.passages:
            p = ET.SubElement(d, "passage")
            _add_infons(p, passage.infons)
            ET.SubElement(p, "offset").text = str(passage.offset)
            ET.SubElement(p, "text").text = passage.text
            for annotation in passage.annotations:
                a = ET.SubElement(p, "annotation", id=annotation.id)
                _add_infons(a, annotation.infons)
                for loc in annotation.locations:
                    offset = passage.offset + to_units(passage.text, loc.start, unit)
                    size = to_units(passage.text, loc.end, unit) - to_units(passage.text, loc.start, unit)
                    ET.SubElement(a, "location", offset=str(offset), length=str(size))
                ET.SubElement(a, "text").text = annotation.text
            _add_relations(p, passage.relations)
        _add_relations(d, document.relations)
    ET.indent(root, space="  ")
    # XML parsers turn a raw \r into \n and refuse control characters: \r goes out as a character
    # reference (ElementTree itself adds none), a forbidden control as a space (one unit in every
    # offset unit, so no offset moves).
    body = ET.tostring(root, encoding="unicode").translate(_UNWRITABLE).replace("\r", "&#13;")
    return (_DECLARATION + body + "\n").encode("utf-8")
