"""Entities into documents, with the provenance that makes every added annotation traceable."""

from __future__ import annotations

from collections.abc import Sequence

from service.decoding.aggregate import Entity
from service.documents.model import Annotation, Collection, Location

ANNOTATOR = "bioner"


def add_entities(
    collection: Collection, found: Sequence[Sequence[Entity]], provenance: dict[str, str], keep_existing: bool = True
) -> Collection:
    """``found[i]`` are the entities of the collection's i-th passage (document order).

    Each becomes an annotation whose infons carry the type, the score and ``provenance`` (model
    name, version, sha256), so every output line can be traced to the model that made it. New ids
    continue after the document's largest numeric id. Existing annotations stay unless
    ``keep_existing`` is off (then relations, which point at them, go too).
    """
    passages = collection.passages()
    if len(found) != len(passages):
        raise ValueError(f"{len(found)} entity lists for {len(passages)} passages")
    cursor = 0
    for document in collection.documents:
        if not keep_existing:
            document.relations = []
            for passage in document.passages:
                passage.annotations, passage.relations = [], []
        ids = [int(a.id) for p in document.passages for a in p.annotations if a.id.isdigit()]
        next_id = max(ids, default=-1) + 1
        for passage in document.passages:
            for entity in found[cursor]:
                infons = {"type": entity.label, "score": f"{entity.score:.4f}", "annotator": ANNOTATOR, **provenance}
                if entity.source:
                    infons["source"] = entity.source  # the head (training corpus) that found it
                if entity.alternatives:  # ',' and ':' only: PubTator carries infons as k=v;k=v
                    infons["alternatives"] = ",".join(f"{label}:{p:.4f}" for label, p in entity.alternatives)
                passage.annotations.append(Annotation(str(next_id), infons, [Location(entity.start, entity.end)], entity.text))
                next_id += 1
            cursor += 1
    return collection
