"""Synchronous text -> entities over any "window batch -> logits" function.

The service's engine runs the same steps asynchronously through its micro-batcher; evaluation
and benchmarks call :func:`predict_texts` with a PyTorch or ONNX Runtime backend, so every
number they report is produced by the decoding that ``POST /ner`` uses.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from service.decoding.aggregate import Decoding, Entity, Strategy, entities_from_scores, softmax
from service.decoding.calibration import calibrated_probs
from service.decoding.crf import Transitions
from service.decoding.labels import LabelScheme
from service.decoding.windows import Encoded, TextEncoder, WindowSpan, plan_windows, stitch

# (input_ids, attention_mask) both (rows, padded_len) int64 -> logits (rows, padded_len, labels)
RunBatch = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class WindowConfig:
    max_length: int = 128
    stride: int = 32

    def content_length(self, n_special: int) -> int:
        return self.max_length - n_special


def pad_windows(rows: Sequence[np.ndarray], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id rows to the longest; returns ``(input_ids, attention_mask)``."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def windows_for(encoder: TextEncoder, encoded: Encoded, config: WindowConfig) -> list[WindowSpan]:
    return plan_windows(len(encoded), config.content_length(encoder.n_special), config.stride)


def predict_token_logits(
    encoder: TextEncoder,
    encoded: Sequence[Encoded],
    run_batch: RunBatch,
    config: WindowConfig,
    batch_size: int = 16,
    pad_id: int = 0,
) -> list[np.ndarray]:
    """Per text, stitched content logits ``(n_tokens, labels)``; windows batched by length."""
    items: list[tuple[int, int, np.ndarray]] = []  # (text index, window index, ids)
    plans = [windows_for(encoder, e, config) if len(e) else [] for e in encoded]
    for t, (enc, plan) in enumerate(zip(encoded, plans)):
        items.extend((t, w, encoder.window_ids(enc, span)) for w, span in enumerate(plan))
    items.sort(key=lambda item: len(item[2]))
    outputs: dict[tuple[int, int], np.ndarray] = {}
    n_prefix = len(encoder.prefix_ids)
    for lo in range(0, len(items), batch_size):
        chunk = items[lo : lo + batch_size]
        ids, mask = pad_windows([c[2] for c in chunk], pad_id)
        logits = run_batch(ids, mask)
        for row, (t, w, window) in enumerate(chunk):
            content = len(window) - encoder.n_special
            outputs[(t, w)] = logits[row, n_prefix : n_prefix + content]
    results = []
    for t, (enc, plan) in enumerate(zip(encoded, plans)):
        if not plan:
            results.append(np.zeros((0, 0), dtype=np.float32))
            continue
        results.append(stitch(len(enc), plan, [outputs[(t, w)] for w in range(len(plan))]))
    return results


def predict_texts(
    texts: Sequence[str],
    encoder: TextEncoder,
    run_batch: RunBatch,
    scheme: LabelScheme,
    config: WindowConfig,
    strategy: Strategy = Strategy.FIRST,
    batch_size: int = 16,
    pad_id: int = 0,
    decoding: Decoding = Decoding.CONSTRAINED,
    transitions: Transitions | None = None,
    temperature: float = 1.0,
    alternatives: int = 0,
) -> list[list[Entity]]:
    encoded = encoder.encode_batch(texts)
    logits = predict_token_logits(encoder, encoded, run_batch, config, batch_size, pad_id)
    return [
        entities_from_scores(
            text,
            enc.offsets,
            enc.word_ids,
            softmax(lg),
            scheme,
            strategy,
            decoding,
            transitions,
            calibrated_probs(lg, temperature),
            alternatives,
        )
        if len(enc)
        else []
        for text, enc, lg in zip(texts, encoded, logits)
    ]
