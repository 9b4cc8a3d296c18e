"""Strict entity-level scores: exact (start, end, type) match per type, micro and macro."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float
    support: int

    @classmethod
    def of(cls, tp: int, n_pred: int, n_gold: int) -> PRF:
        p = tp / n_pred if n_pred else 0.0
        r = tp / n_gold if n_gold else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        return cls(p, r, f, n_gold)


SpanKey = tuple[int, int, str]


def span_scores(gold: Sequence[Iterable[SpanKey]], predicted: Sequence[Iterable[SpanKey]]) -> dict[str, Any]:
    """Per-type, micro and macro P/R/F1 over documents' span sets."""
    tp: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_gold: Counter[str] = Counter()
    for g_doc, p_doc in zip(gold, predicted, strict=True):
        g, p = set(g_doc), set(p_doc)
        for _, _, kind in g:
            n_gold[kind] += 1
        for _, _, kind in p:
            n_pred[kind] += 1
        for _, _, kind in g & p:
            tp[kind] += 1
    kinds = sorted(set(n_gold) | set(n_pred))
    per_type = {k: PRF.of(tp[k], n_pred[k], n_gold[k]) for k in kinds}
    micro = PRF.of(sum(tp.values()), sum(n_pred.values()), sum(n_gold.values()))
    gold_kinds = [k for k in kinds if n_gold[k]]

    def mean_of(field: str) -> float:
        return float(sum(getattr(per_type[k], field) for k in gold_kinds)) / max(len(gold_kinds), 1)

    macro = PRF(mean_of("precision"), mean_of("recall"), mean_of("f1"), sum(n_gold.values()))
    return {"micro": asdict(micro), "macro": asdict(macro), "per_type": {k: asdict(v) for k, v in per_type.items()}}


def score_documents(
    docs: Sequence[Any], predicted: Sequence[Sequence[Any]], types: Sequence[str] | None = None
) -> tuple[dict[str, Any], list[Any], list[list[Any]]]:
    """Strict span scores of ``predicted`` entities (anything with start/end/label) against the
    documents' gold spans; with ``types``, spans of other types are set aside on both sides
    (cross-corpus scoring on shared types). ``bioner evaluate`` and ``POST /evaluate`` both call
    this, so their figures are the same by construction. Returns the report and what was scored."""
    from service.corpora.document import Document

    kept_docs = list(docs)
    kept: list[list[Any]] = [list(p) for p in predicted]
    if types:
        keep = set(types)
        kept_docs = [Document(d.id, d.text, tuple(s for s in d.spans if s.label in keep), d.token_offsets) for d in kept_docs]
        kept = [[e for e in ents if e.label in keep] for ents in kept]
    report = span_scores(
        [[(s.start, s.end, s.label) for s in d.spans] for d in kept_docs],
        [[(e.start, e.end, e.label) for e in ents] for ents in kept],
    )
    return report, kept_docs, kept


def format_table(report: dict[str, Any]) -> str:
    rows = [("type", "precision", "recall", "f1", "support")]
    per_type: dict[str, dict[str, float]] = report["per_type"]
    for name, prf in [*per_type.items(), ("micro", report["micro"]), ("macro", report["macro"])]:
        prf = dict(prf)
        rows.append((name, f"{prf['precision']:.4f}", f"{prf['recall']:.4f}", f"{prf['f1']:.4f}", str(prf["support"])))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows)
