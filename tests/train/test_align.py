"""Character spans -> subword labels -> spans must round-trip exactly when boundaries are words."""

from __future__ import annotations

import numpy as np
import pytest
from tiny_bundle import build_tokenizer

from service.corpora import Document, Span
from service.decoding.aggregate import Strategy, entities_from_scores
from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Pipeline
from service.decoding.windows import Align, TextEncoder, WindowConfig
from train.align import IGNORE, AlignStats, LabelPolicy, build_features, token_labels

DOC = Document("d", "the p53x kinase binds myc gene, 蛋白 在 cells", (Span(4, 15, "protein"), Span(22, 30, "DNA"), Span(32, 34, "protein")))
LABELS = ["O", "B-DNA", "I-DNA", "B-protein", "I-protein"]


@pytest.mark.parametrize("policy", list(LabelPolicy))
def test_round_trip(policy: LabelPolicy) -> None:
    encoder = TextEncoder(build_tokenizer())
    encoded = encoder.encode(DOC.text)
    label2id = {l: i for i, l in enumerate(LABELS)}
    stats = AlignStats()
    labels = token_labels(DOC, encoded, label2id, policy, stats)
    assert stats.misaligned_spans == 0
    if policy is LabelPolicy.FIRST:
        assert (labels == IGNORE).sum() == 1  # the "##x" continuation of p53x
    probs = np.full((len(encoded), len(LABELS)), 1e-3, dtype=np.float32)
    probs[np.arange(len(encoded)), np.where(labels == IGNORE, 0, labels)] = 1.0
    scheme = LabelScheme.from_id2label(dict(enumerate(LABELS)))
    strategy = Strategy.FIRST if policy is LabelPolicy.FIRST else Strategy.AVERAGE
    entities = entities_from_scores(DOC.text, encoded.offsets, encoded.word_ids, probs, scheme, strategy)
    assert [(e.start, e.end, e.label) for e in entities] == [(s.start, s.end, s.label) for s in DOC.spans]


def test_boundary_inside_a_word_is_counted() -> None:
    encoder = TextEncoder(build_tokenizer())
    doc = Document("d", "the p53x", (Span(4, 7, "protein"),))  # ends inside the word p53x
    stats = AlignStats()
    token_labels(doc, encoder.encode(doc.text), {l: i for i, l in enumerate(LABELS)}, LabelPolicy.FIRST, stats)
    assert stats.misaligned_spans == 1


@pytest.mark.parametrize("align", list(Align))
def test_training_windows_are_the_services(align: Align) -> None:
    """A model trained on sentence-aligned windows must see the windows it is served on: same cuts, same ids."""
    encoder = TextEncoder(build_tokenizer())
    sentences = ["The p53 kinase binds the myc gene in cells.", "A p53 gene binds to the myc kinase, and the p53 kinase binds."]
    text = " ".join(sentences * 3)
    window = WindowConfig(16, 4, align)
    features, _ = build_features([Document("d", text, ())], encoder, {l: i for i, l in enumerate(LABELS)}, window, LabelPolicy.FIRST)
    plan = Pipeline(encoder, LabelScheme.from_id2label(dict(enumerate(LABELS))), window).plan([text])
    assert [f.input_ids.tolist() for f in features] == [row.tolist() for row in plan.rows]
    starts = [span.start for span in plan.texts[0].spans]
    tokens = WindowConfig(16, 4).plan_text(text, encoder.encode(text), encoder.n_special)
    assert (starts != [span.start for span in tokens]) is (align is Align.SENTENCES)  # sentence windows really cut elsewhere
