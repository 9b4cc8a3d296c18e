"""BioC JSON, as the ``bioc`` Python package writes it (``documents`` > ``passages`` > ``annotations``
with ``locations`` of ``offset``/``length``)."""

from __future__ import annotations

import json
from typing import Any

from service.documents.bioc_xml import locate
from service.documents.model import Annotation, Collection, Document, DocumentError, Passage, Relation
from service.documents.offsets import OffsetUnit, to_units


def _infons(data: Any, where: str) -> dict[str, str]:
    infons = data.get("infons") or {}
    if not isinstance(infons, dict):
        raise DocumentError(f"{where}: infons must be an object")
    return {str(k): "" if v is None else str(v) for k, v in infons.items()}


def _relations(data: Any, where: str) -> list[Relation]:
    return [
        Relation(str(r.get("id", "")), _infons(r, where), [(str(n.get("refid", "")), str(n.get("role", ""))) for n in r.get("nodes") or []])
        for r in data.get("relations") or []
    ]


def read_bioc_json(data: bytes | str, unit: OffsetUnit = OffsetUnit.CODEPOINT, what: str = "BioC JSON") -> Collection:
    try:
        root = json.loads(data)
    except ValueError as exc:
        raise DocumentError(f"{what}: not JSON: {exc}") from None
    if not isinstance(root, dict) or not isinstance(root.get("documents"), list):
        raise DocumentError(f"{what}: a BioC JSON collection is an object with a 'documents' list")
    try:
        documents = []
        for d in root["documents"]:
            doc_id = str(d.get("id", ""))
            where = f"{what}: document {doc_id}"
            passages = []
            for p in d.get("passages") or []:
                if p.get("sentences"):
                    raise DocumentError(f"{where}: sentence-level BioC is not supported; send passages")
                passage = Passage(int(p["offset"]), str(p.get("text") or ""), _infons(p, where), relations=_relations(p, where))
                for a in p.get("annotations") or []:
                    here = f"{where}, annotation {a.get('id', '?')}"
                    locations = [locate(passage, int(loc["offset"]), int(loc["length"]), unit, here) for loc in a.get("locations") or []]
                    passage.annotations.append(Annotation(str(a.get("id", "")), _infons(a, here), locations, str(a.get("text") or "")))
                passages.append(passage)
            documents.append(Document(doc_id, passages, _infons(d, where), _relations(d, where)))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, DocumentError):
            raise
        raise DocumentError(f"{what}: not a BioC JSON collection: {type(exc).__name__}: {exc}") from None
    return Collection(documents, str(root.get("source", "")), str(root.get("date", "")), str(root.get("key", "")), _infons(root, what))


def _relations_json(relations: list[Relation]) -> list[dict[str, Any]]:
    return [{"id": r.id, "infons": r.infons, "nodes": [{"refid": n, "role": role} for n, role in r.nodes]} for r in relations]


def write_bioc_json(collection: Collection, unit: OffsetUnit = OffsetUnit.CODEPOINT) -> bytes:
    def annotation(passage: Passage, a: Annotation) -> dict[str, Any]:
        locations = [
            {
                "offset": passage.offset + to_units(passage.text, loc.start, unit),
                "length": to_units(passage.text, loc.end, unit) - to_units(passage.text, loc.start, unit),
            }
            for loc in a.locations
        ]
        return {"id": a.id, "infons": a.infons, "text": a.text, "locations": locations}

    out = {
        "source": collection.source,
        "date": collection.date,
        "key": collection.key,
        "infons": collection.infons,
        "documents": [
            {
                "id": d.id,
                "infons": d.infons,
                "passages": [
                    {
                        "offset": p.offset,
                        "infons": p.infons,
                        "text": p.text,
                        "sentences": [],
                        "annotations": [annotation(p, a) for a in p.annotations],
                        "relations": _relations_json(p.relations),
                    }
                    for p in d.passages
                ],
                "relations": _relations_json(d.relations),
            }
            for d in collection.documents
        ],
    }
    return (json.dumps(out, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
