"""brat standoff: ``ID.txt`` plus ``ID.ann`` with ``T1<TAB>type start end<TAB>surface``."""

from __future__ import annotations

import logging
from pathlib import Path

from service.corpora.document import Document, Span

log = logging.getLogger(__name__)


def read_brat(folder: Path) -> list[Document]:
    docs = []
    skipped = {"discontinuous": 0, "overlapping": 0, "surface_mismatch": 0}
    for txt in sorted(folder.glob("*.txt")):
        ann = txt.with_suffix(".ann")
        content = ann.read_text(encoding="utf-8") if ann.exists() else ""
        with txt.open(encoding="utf-8", newline="") as fh:  # brat offsets count a "\r\n" as two characters
            text = fh.read()
        docs.append(parse_brat(txt.stem, text, content, str(ann), skipped))
    if any(skipped.values()):
        log.warning("brat %s: annotations not used: %s", folder, skipped)
    return docs


def parse_brat(doc_id: str, text: str, ann: str, where: str = "", skipped: dict[str, int] | None = None) -> Document:
    """One document from its text and its ``.ann`` content (files, or a JSON envelope)."""
    skipped = skipped if skipped is not None else {"discontinuous": 0, "overlapping": 0, "surface_mismatch": 0}
    spans = _parse_ann(ann.splitlines(), text, where or doc_id, skipped)
    for span in spans:
        if not 0 <= span.start < span.end <= len(text):
            raise ValueError(f"{where or doc_id}: annotation {span} outside the text ({len(text)} characters)")
    return Document(doc_id, text, tuple(_drop_overlaps(spans, where or doc_id, skipped)))


def _parse_ann(lines: list[str], text: str, where: str, skipped: dict[str, int]) -> list[Span]:
    spans = []
    for number, line in enumerate(lines, 1):
        if not line.startswith("T"):
            continue
        try:
            _, body, surface = line.split("\t", 2)
        except ValueError as exc:
            raise ValueError(f"{where}:{number}: malformed text-bound annotation: {line!r}") from exc
        label, _, ranges = body.partition(" ")
        if ";" in ranges:
            skipped["discontinuous"] += 1
            log.info("%s:%d: discontinuous annotation reported and skipped: %s", where, number, line)
            continue
        try:
            start, end = (int(x) for x in ranges.split())
        except ValueError as exc:
            raise ValueError(f"{where}:{number}: malformed offsets in {line!r}") from exc
        if text[start:end] != surface:
            skipped["surface_mismatch"] += 1
            log.info("%s:%d: offsets do not match surface text %r", where, number, surface)
        spans.append(Span(start, end, label))
    return spans


def _drop_overlaps(spans: list[Span], where: str, skipped: dict[str, int]) -> list[Span]:
    """Keep the earlier (then longer) of overlapping spans: flat BIO cannot encode nesting."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start))):
        if kept and span.start < kept[-1].end:
            skipped["overlapping"] += 1
            log.info("%s: overlapping annotation %s dropped (kept %s)", where, span, kept[-1])
            continue
        kept.append(span)
    return kept
