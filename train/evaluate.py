"""Evaluate on raw text through the service's own windowing and decoding.

Scores are exact character-span matches (start, end, type); for column files the predicted
spans are also mapped back to the source tokens and scored with seqeval in strict IOB2 mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.corpora import Document, Span
from service.corpora.scoring import score_documents
from service.decoding.aggregate import Entity
from service.decoding.pipeline import Pipeline, RunBatch
from service.decoding.windows import TextEncoder


def evaluate_documents(
    docs: Sequence[Document], pipeline: Pipeline, run: RunBatch, batch_size: int = 16, types: Sequence[str] | None = None
) -> dict[str, Any]:
    """Strict span scores of the pipeline's answers; with ``types``, gold and predicted spans of
    other types are set aside (cross-corpus evaluation: a model scored on the shared types only)."""
    predicted = pipeline.predict([d.text for d in docs], run, batch_size)
    report, docs, predicted = score_documents(docs, predicted, types)
    report["token_accuracy"] = word_accuracy(docs, predicted, pipeline.encoder)
    if all(d.token_offsets for d in docs):
        report["seqeval"] = seqeval_report(docs, predicted)
    return report


def word_accuracy(docs: Sequence[Document], predicted: Sequence[Sequence[Entity]], encoder: TextEncoder) -> float:
    """Share of tokenizer words whose IOB2 label from the predicted spans equals the gold one."""
    from train.align import AlignStats, word_labels

    kinds = sorted({s.label for d in docs for s in d.spans} | {e.label for ents in predicted for e in ents})
    label2id = {"O": 0, **{f"{p}-{k}": i for i, (k, p) in enumerate(((k, p) for k in kinds for p in "BI"), 1)}}
    right = total = 0
    for doc, ents, encoded in zip(docs, predicted, encoder.encode_batch([d.text for d in docs])):
        if not len(encoded):
            continue
        guess = Document(doc.id, doc.text, tuple(Span(e.start, e.end, e.label) for e in ents))
        gold_labels = word_labels(doc, encoded, label2id, AlignStats())[2]
        pred_labels = word_labels(guess, encoded, label2id, AlignStats())[2]
        right += int((gold_labels == pred_labels).sum())
        total += len(gold_labels)
    return right / total if total else 1.0


def tags_from_spans(doc: Document, spans: Sequence[tuple[int, int, str]]) -> list[str]:
    """IOB2 tags of the document's source tokens; a token is inside a span if it overlaps it."""
    tags = ["O"] * len(doc.token_offsets)
    for start, end, kind in sorted(spans):
        inside = [i for i, (a, b) in enumerate(doc.token_offsets) if a < end and b > start]
        for n, i in enumerate(inside):
            tags[i] = ("B-" if n == 0 else "I-") + kind
    return tags


def seqeval_report(docs: Sequence[Document], predicted: Sequence[Sequence[Entity]]) -> dict[str, Any]:
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.scheme import IOB2

    gold = [tags_from_spans(d, [(s.start, s.end, s.label) for s in d.spans]) for d in docs]
    pred = [tags_from_spans(d, [(e.start, e.end, e.label) for e in ents]) for d, ents in zip(docs, predicted)]
    report = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    return {"token_accuracy": accuracy_score(gold, pred), "report": {k: {m: float(v) for m, v in d.items()} for k, d in report.items()}}
