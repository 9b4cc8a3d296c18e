"""ONNX Runtime session: provider choice with CUDA -> CPU fallback, threads, ``run``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from service.decoding.token_types import TokenTypes, unpack
from service.errors import BundleError, InferenceError
from service.settings import GraphOptimization, Provider

log = logging.getLogger(__name__)

_LEVELS = {
    GraphOptimization.DISABLE: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    GraphOptimization.BASIC: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    GraphOptimization.EXTENDED: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    GraphOptimization.ALL: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def choose_providers(requested: Provider) -> list[str]:
    available = ort.get_available_providers()
    if requested is Provider.CUDA:
        if "CUDAExecutionProvider" in available:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        log.warning("CUDA requested but not available in onnxruntime (%s); falling back to CPU", available)
    return ["CPUExecutionProvider"]


class OnnxSession:
    """Thin wrapper that knows the graph's inputs and checks the logits width once."""

    def __init__(
        self,
        model_path: Path,
        n_labels: int,
        provider: Provider = Provider.CPU,
        intra_op_threads: int = 0,
        inter_op_threads: int = 1,
        optimization: GraphOptimization = GraphOptimization.ALL,
        spinning: bool = False,
    ) -> None:
        options = ort.SessionOptions()
        # Spinning threads react faster between ops but burn cores that tokenising, decoding and the
        # event loop need: off by default (README, "Thread spinning off by default", measured).
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = inter_op_threads
        options.graph_optimization_level = _LEVELS[optimization]
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(model_path), options, providers=choose_providers(provider))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(f"model.onnx cannot be loaded: {str(exc).splitlines()[0]}") from exc
        self.input_names = [i.name for i in self._session.get_inputs()]
        missing = {"input_ids", "attention_mask"} - set(self.input_names)
        if missing:
            raise BundleError(f"model.onnx lacks inputs {sorted(missing)} (has {self.input_names})")
        output = {o.name: o for o in self._session.get_outputs()}.get("logits")
        if output is None:
            raise BundleError("model.onnx has no 'logits' output")
        width = output.shape[-1] if output.shape else None
        if isinstance(width, int) and width != n_labels:
            raise BundleError(f"model.onnx gives {width} logits per token but config.json has {n_labels} labels")
        self.n_labels = n_labels
        self.provider = self._session.get_providers()[0]

    def check_reads(self, token_types: TokenTypes, where: Path) -> None:
        """A bundle that marks token types needs a graph that reads them: refused at load, not at
        the first request with an upper-case letter."""
        if token_types is not TokenTypes.NONE and "token_type_ids" not in self.input_names:
            raise BundleError(f"serving.json in {where} marks token types {token_types.value!r}, model.onnx reads none")

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """``input_ids`` may carry token types packed in (service.decoding.token_types)."""
        input_ids, token_types = unpack(input_ids)
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if "token_type_ids" in self.input_names:
            feeds["token_type_ids"] = token_types
        elif token_types.any():
            raise InferenceError("the bundle marks token types but model.onnx has no token_type_ids input")
        logits: np.ndarray = self._session.run(["logits"], feeds)[0]
        if logits.shape[:2] != input_ids.shape or logits.shape[-1] != self.n_labels:
            raise InferenceError(f"model.onnx returned logits {logits.shape} for inputs {input_ids.shape}")
        return logits
