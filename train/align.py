"""Character spans -> per-subword training labels, through the service's own tokenisation.

Words are the tokenizer's pre-tokenizer words; a word takes the label of the entity covering
its first character (``B-`` if the previous word is not in the same entity). Entity boundaries
that fall inside a word cannot be represented and are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from service.corpora.document import Document
from service.decoding.aggregate import word_boundaries
from service.decoding.windows import Encoded, TextEncoder, WindowConfig

IGNORE = -100


class LabelPolicy(str, Enum):
    FIRST = "first"  # only a word's first subword is trained (pairs with the `first` strategy)
    ALL = "all"  # every subword is trained; continuation subwords of a B- word get I-


@dataclass(frozen=True)
class Feature:
    input_ids: np.ndarray
    labels: np.ndarray


@dataclass
class AlignStats:
    words: int = 0
    misaligned_spans: int = 0


def label_list(docs: list[Document]) -> list[str]:
    kinds = sorted({s.label for d in docs for s in d.spans})
    return ["O"] + [f"{p}-{k}" for k in kinds for p in ("B", "I")]


def word_labels(doc: Document, encoded: Encoded, label2id: dict[str, int], stats: AlignStats) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns word token ranges and the label id of each word."""
    owner = np.full(len(doc.text) + 1, -1, dtype=np.int64)
    for index, span in enumerate(doc.spans):
        owner[span.start : span.end] = index
    starts, ends = word_boundaries(encoded.word_ids)
    labels = np.zeros(len(starts), dtype=np.int64)
    previous = -1
    for w, (a, b) in enumerate(zip(starts, ends)):
        lo, hi = int(encoded.offsets[a, 0]), int(encoded.offsets[b - 1, 1])
        covering = owner[lo:hi]
        hits = covering[covering >= 0]
        entity = int(hits[0]) if hits.size else -1
        if entity >= 0:
            span = doc.spans[entity]
            if span.start > lo or span.end < hi:
                stats.misaligned_spans += 1
            prefix = "I" if entity == previous else "B"
            labels[w] = label2id[f"{prefix}-{span.label}"]
        previous = entity
    stats.words += len(starts)
    return starts, ends, labels


def token_labels(doc: Document, encoded: Encoded, label2id: dict[str, int], policy: LabelPolicy, stats: AlignStats) -> np.ndarray:
    starts, ends, labels = word_labels(doc, encoded, label2id, stats)
    out = np.full(len(encoded), IGNORE, dtype=np.int64)
    id2label = {v: k for k, v in label2id.items()}
    for a, b, label in zip(starts, ends, labels):
        out[a] = label
        if policy is LabelPolicy.ALL and b - a > 1:
            name = id2label[int(label)]
            out[a + 1 : b] = label2id["I-" + name[2:]] if name.startswith("B-") else label
    return out


def build_features(
    docs: list[Document], encoder: TextEncoder, label2id: dict[str, int], config: WindowConfig, policy: LabelPolicy
) -> tuple[list[Feature], AlignStats]:
    """Windows of every document, cut exactly as the service cuts them."""
    stats = AlignStats()
    features = []
    n_prefix, n_suffix = len(encoder.prefix_ids), len(encoder.suffix_ids)
    for doc, encoded in zip(docs, encoder.encode_batch([d.text for d in docs])):
        if len(encoded) == 0:
            continue
        labels = token_labels(doc, encoded, label2id, policy, stats)
        for span in config.plan_text(doc.text, encoded, encoder.n_special):
            window_labels = np.concatenate([np.full(n_prefix, IGNORE), labels[span.start : span.end], np.full(n_suffix, IGNORE)]).astype(
                np.int64
            )
            features.append(Feature(encoder.window_ids(encoded, span), window_labels))
    return features, stats
