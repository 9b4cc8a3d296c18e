"""``RunBatch`` callables over a PyTorch model or an ONNX bundle, for evaluation and parity.

torch is imported only by :func:`torch_runner`: scoring an ONNX bundle never loads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from service.bundle_format import CONFIG_FILE
from service.decoding.pipeline import RunBatch
from service.decoding.token_types import unpack

if TYPE_CHECKING:
    import torch


def torch_runner(model: torch.nn.Module) -> RunBatch:
    import torch

    model.eval()
    device = next(model.parameters()).device

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        ids, types = unpack(ids)
        inputs = {"input_ids": torch.from_numpy(ids).to(device), "attention_mask": torch.from_numpy(mask).to(device)}
        if types.any():  # as train.batches.model_inputs: encoders without token types take none
            inputs["token_type_ids"] = torch.from_numpy(types).to(device)
        with torch.inference_mode():
            out = model(**inputs)
        return out.logits.float().cpu().numpy()

    return run


def onnx_runner(model_path: Path, threads: int = 0, n_labels: int | None = None) -> RunBatch:
    """The service's own session (CPU); ``n_labels`` defaults to ``config.json`` beside the graph."""
    from service.runtime.session import OnnxSession

    if n_labels is None:
        n_labels = len(json.loads((model_path.parent / CONFIG_FILE).read_text(encoding="utf-8"))["id2label"])
    return OnnxSession(model_path, n_labels, intra_op_threads=threads).run
