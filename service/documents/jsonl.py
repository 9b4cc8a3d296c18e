"""The project's JSON Lines: one document per line.

Written as ``{"id", "infons", "passages": [{"offset", "infons", "text", "entities": [...]}],
"relations"}``, each entity ``{"id", "start", "end", "label", "text", "infons"}`` with document
offsets in the chosen unit (plus ``"locations"`` when discontinuous). Read: that, or the simple
training form ``{"text", "entities": [{"start", "end", "label"}]}`` (one passage at offset 0).
"""

from __future__ import annotations

import json
from typing import Any

from service.documents.bioc_json import _infons, _relations, _relations_json
from service.documents.bioc_xml import locate
from service.documents.model import Annotation, Collection, Document, DocumentError, Passage
from service.documents.offsets import OffsetUnit, to_units


def _passage(data: Any, unit: OffsetUnit, where: str) -> Passage:
    passage = Passage(int(data.get("offset", 0)), str(data.get("text") or ""), _infons(data, where))
    for k, e in enumerate(data.get("entities") or []):
        here = f"{where}, entity {e.get('id', k)}"
        spans = e.get("locations") or [[e["start"], e["end"]]]
        locations = [locate(passage, int(s), int(end) - int(s), unit, here) for s, end in spans]
        infons = {"type": str(e.get("label", "")), **_infons(e, here)}
        if "score" in e and "score" not in infons:
            infons["score"] = str(e["score"])
        text = str(e["text"]) if "text" in e else passage.text[locations[0].start : locations[-1].end]
        passage.annotations.append(Annotation(str(e.get("id", k)), infons, locations, text))
    return passage


def read_jsonl_documents(data: bytes | str, unit: OffsetUnit = OffsetUnit.CODEPOINT, what: str = "JSON Lines") -> Collection:
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    documents = []
    for number, line in enumerate(_lines(text), 1):
        if not line.strip():
            continue
        where = f"{what} line {number}"
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise DocumentError(f"{where}: each line must be a JSON object")
            passages = record.get("passages")
            if passages is None:
                passages = [record]  # the simple form: the record is its own single passage
            doc = Document(str(record.get("id", number)), [_passage(p, unit, where) for p in passages], _infons(record, where))
            doc.relations = _relations(record, where)
            documents.append(doc)
        except DocumentError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DocumentError(f"{where}: {type(exc).__name__}: {exc}") from None
    return Collection(documents)


def _entity(passage: Passage, a: Annotation, unit: OffsetUnit) -> dict[str, Any]:
    def at(position: int) -> int:
        return passage.offset + to_units(passage.text, position, unit)

    out: dict[str, Any] = {"id": a.id, "start": at(a.start), "end": at(a.end), "label": a.type, "text": a.text}
    if len(a.locations) > 1:
        out["locations"] = [[at(loc.start), at(loc.end)] for loc in a.locations]
    out["infons"] = {k: v for k, v in a.infons.items() if k != "type"}
    return out


def write_jsonl_documents(collection: Collection, unit: OffsetUnit = OffsetUnit.CODEPOINT) -> bytes:
    lines = []
    for d in collection.documents:
        record = {
            "id": d.id,
            "infons": d.infons,
            "passages": [
                {"offset": p.offset, "infons": p.infons, "text": p.text, "entities": [_entity(p, a, unit) for a in p.annotations]}
                for p in d.passages
            ],
            "relations": _relations_json(d.relations),
        }
        lines.append(json.dumps(record, ensure_ascii=False))
    return "".join(line + "\n" for line in lines).encode("utf-8")


def _lines(text: str) -> list[str]:
    """Lines split on \\n only (a trailing \\r dropped): str.splitlines() would also split inside a
    text at U+2028, U+0085 or a form feed, which JSON and PubTator carry unescaped."""
    return [line.removesuffix("\r") for line in text.split("\n")]
