"""One place that makes a run repeatable: every random generator seeded, saved and restored.

A resumed run continues bit for bit only if every generator a training step draws from comes back:
the batch-order generator, torch's (dropout) and, for anything a library draws, Python's and
numpy's global ones. The state is kept in plain types so ``torch.load(weights_only=True)`` reads it.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int, threads: int = 0) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads:
        torch.set_num_threads(threads)


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Where ``rng`` and the global generators stand now."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "batches": rng.bit_generator.state,
        "python": random.getstate(),
        "numpy": (kind, np.asarray(keys).tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], rng: np.random.Generator) -> None:
    """Put ``rng`` and the global generators back where :func:`rng_state` found them."""
    rng.bit_generator.state = state["batches"]
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
