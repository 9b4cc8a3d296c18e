"""Batches: length grouping (little padding), right padding, and mixing two corpora.

Every draw comes from the generator passed in, never a global one, so the batch order is a
function of the run's seed and is restored exactly when a run resumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from service.decoding.token_types import unpack
from train.align import IGNORE, Feature


def length_grouped_batches(features: Sequence[Feature], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffle, sort by length inside mega-chunks, batch, shuffle batches: little padding, still random."""
    order = rng.permutation(len(features))
    mega = batch_size * 50
    batches: list[list[int]] = []
    for lo in range(0, len(order), mega):
        chunk = sorted(order[lo : lo + mega], key=lambda i: len(features[i].input_ids), reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def sorted_batches(lengths: Sequence[int], size: int, rng: np.random.Generator | None) -> list[list[int]]:
    """Indices sorted by length, cut into batches; the batches in random order when ``rng`` is given."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches = [order[lo : lo + size] for lo in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def pad_labelled(rows: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``(input_ids, labels)`` rows into one batch; padding is masked and never trained.
    Token types packed into the ids (service.decoding.token_types) come out as ``token_type_ids``."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for r, (row_ids, row_labels) in enumerate(rows):
        plain, row_types = unpack(row_ids)
        ids[r, : len(row_ids)] = torch.from_numpy(plain)
        types[r, : len(row_ids)] = torch.from_numpy(row_types)
        mask[r, : len(row_ids)] = 1
        labels[r, : len(row_ids)] = torch.from_numpy(row_labels)
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels}


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """What an encoder reads of a :func:`pad_labelled` batch (its labels are the loss's). Token types
    only when some are marked: all zeros is what BERT assumes without them, and encoders without
    token types (DistilBERT) take no such argument."""
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if bool(batch["token_type_ids"].any()):
        inputs["token_type_ids"] = batch["token_type_ids"]
    return inputs


def collate(features: Sequence[Feature], indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    return pad_labelled([(features[i].input_ids, features[i].labels) for i in indices], pad_id)


def aux_batch_count(n_main: int, ratio: float) -> int:
    """Auxiliary batches beside ``n_main`` main ones for the auxiliary share of an epoch to be ``ratio``."""
    return int(round(n_main * ratio / (1.0 - ratio)))


def mixed_batches(main: list[list[int]], aux: list[list[int]], ratio: float, rng: np.random.Generator) -> list[tuple[str, list[int]]]:
    """Every main batch once, plus auxiliary batches so that they make up ``ratio`` of the epoch."""
    n_aux = aux_batch_count(len(main), ratio)
    picked = [aux[i % len(aux)] for i in range(n_aux)] if aux else []
    items = [("main", b) for b in main] + [("aux", b) for b in picked]
    order = rng.permutation(len(items))
    return [items[i] for i in order]
