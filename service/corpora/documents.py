"""BioC, PubTator and JSON Lines documents as gold: training, ``bioner evaluate`` and ``/evaluate``."""

from __future__ import annotations

from collections.abc import Sequence

from service.corpora.document import Document as GoldDocument
from service.corpora.document import Span
from service.documents.model import Collection


def to_gold(collection: Collection, types: Sequence[str] | None = None) -> list[GoldDocument]:
    """One training/evaluation document per passage; discontinuous annotations are set aside
    (a BIO tagger cannot learn them), as the brat reader does."""
    keep = set(types) if types else None
    out = []
    for document in collection.documents:
        for i, passage in enumerate(document.passages):
            spans = sorted(
                {
                    Span(a.start, a.end, a.type)
                    for a in passage.annotations
                    if len(a.locations) == 1 and a.type and (keep is None or a.type in keep) and a.end > a.start
                },
                key=lambda s: (s.start, s.end, s.label),
            )
            out.append(GoldDocument(f"{document.id}:{i}", passage.text, tuple(spans)))
    return out
