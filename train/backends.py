"""``RunBatch`` callables over a PyTorch model or an ONNX bundle, for evaluation and parity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from service.decoding.predict import RunBatch


def torch_runner(model: torch.nn.Module) -> RunBatch:
    model.eval()

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        return out.logits.float().numpy()

    return run


def onnx_runner(model_path: Path, threads: int = 0) -> RunBatch:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        return session.run(["logits"], feeds)[0]

    return run
