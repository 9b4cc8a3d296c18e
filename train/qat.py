"""Quantisation-aware fine-tuning: the last epochs train through the rounding that export applies.

Post-training int8 picks ranges for weights that never saw the rounding; QAT lets the weights learn
around it. (Measured on JNLPBA: once export rounds only what the MatMuls read, post-training
percentile ranges already keep fp32's F1, and one QAT epoch did not beat them; README.) During the
QAT epochs every ``nn.Linear`` of the model runs as the exported graph's ``MatMul`` will:
- its input rounded to uint8 over one range per tensor (asymmetric; the range a moving average of
  the batches' min and max, as the observers of PyTorch's QAT keep it);
- its weight rounded to [-64, 64] per output channel (symmetric): the ``s7`` scheme, which every
  x86 instruction set computes alike (see :mod:`train.quantize`).

The embedding tables are rounded as ONNX Runtime stores them for ``Gather``: uint8 in [0, 127] over
the table's own range. Gradients pass straight through the rounding (PyTorch's fake quantisation).

The simulation stays outside the model: the fake-quant modules (with the observers' ranges) are a
module of their own, saved in the resume state, and each layer's ``forward`` is overridden on the
instance. The model's state dict, ``save_pretrained`` and ``bioner export`` are unchanged: the
checkpoint is fp32, and beside it :data:`RANGES_FILE` holds the activation ranges the model learned
with, which export hands to ONNX Runtime instead of calibrating new ones.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.ao.quantization import (
    FakeQuantize,
    FusedMovingAvgObsFakeQuantize,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
)
from torch.nn import functional

RANGES_FILE = "qat_ranges.json"
WEIGHTS = "s7"  # the weight format simulated, and the one export must use for these ranges


def _activation_quantizer() -> FusedMovingAvgObsFakeQuantize:
    return FusedMovingAvgObsFakeQuantize(
        observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=torch.quint8, qscheme=torch.per_tensor_affine
    )


def _weight_quantizer() -> FakeQuantize:
    # Averaging constant 1: the range of the weights as they are now, as export computes it. Not the
    # fused kernel: for symmetric ranges it picks scales up to 0.8% off ONNX Runtime's max|w| / 64.
    return FakeQuantize(
        observer=MovingAveragePerChannelMinMaxObserver,
        averaging_constant=1.0,
        quant_min=-64,
        quant_max=64,
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        ch_axis=0,
    )


def _table_quantizer() -> FusedMovingAvgObsFakeQuantize:
    return FusedMovingAvgObsFakeQuantize(
        observer=MovingAverageMinMaxObserver,
        averaging_constant=1.0,
        quant_min=0,
        quant_max=127,
        dtype=torch.quint8,
        qscheme=torch.per_tensor_affine,
    )


def graph_scope(module_name: str) -> str:
    """The ONNX node scope PyTorch's exporter gives a submodule: ``bert.encoder.layer.0.output.dense``
    -> ``/bert/encoder/layer.0/output/dense`` (list indices stay joined by a dot)."""
    return "/" + re.sub(r"\.(?!\d)", "/", module_name)


def _key(module_name: str) -> str:
    return module_name.replace(".", "-")  # a ModuleDict key may not hold dots


class QuantSim(torch.nn.Module):
    """int8 rounding simulated in ``model``'s linear layers and embedding tables, off until :meth:`enable`."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.linears = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
        self.tables = {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Embedding)}
        if not self.linears:
            raise ValueError("the model has no linear layers to quantise")
        # typed views of the registered modules below (torch's attribute typing hides their methods)
        self._inputs: dict[str, Any] = {n: _activation_quantizer() for n in self.linears}
        weights: dict[str, Any] = {n: _weight_quantizer() for n in self.linears}
        self._weights = weights
        tables: dict[str, Any] = {n: _table_quantizer() for n in self.tables}
        self._all: list[Any] = [*self._inputs.values(), *weights.values(), *tables.values()]
        self.inputs = torch.nn.ModuleDict({_key(n): fq for n, fq in self._inputs.items()})
        self.weights = torch.nn.ModuleDict({_key(n): fq for n, fq in weights.items()})
        self.table_weights = torch.nn.ModuleDict({_key(n): fq for n, fq in tables.items()})
        for name, linear in self.linears.items():
            linear.forward = self._linear_forward(linear, self._inputs[name], weights[name])  # type: ignore[method-assign]
        for name, table in self.tables.items():
            table.forward = self._table_forward(table, tables[name])  # type: ignore[method-assign]
        self.enable(False)

    @staticmethod
    def _linear_forward(linear: torch.nn.Linear, fq_in: torch.nn.Module, fq_w: torch.nn.Module) -> Any:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return functional.linear(fq_in(x), fq_w(linear.weight), linear.bias)

        return forward

    @staticmethod
    def _table_forward(table: torch.nn.Embedding, fq: torch.nn.Module) -> Any:
        def forward(ids: torch.Tensor) -> torch.Tensor:
            t = table
            return functional.embedding(ids, fq(t.weight), t.padding_idx, t.max_norm, t.norm_type, t.scale_grad_by_freq, t.sparse)

        return forward

    def enable(self, on: bool = True) -> None:
        """Round (and observe ranges) from now on, or run the model in plain fp32."""
        for fq in self._all:
            fq.enable_fake_quant(on)
            fq.enable_observer(on)

    @property
    def enabled(self) -> bool:
        return any(bool(fq.fake_quant_enabled[0]) for fq in self._all)

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Ranges held still: scoring dev must not move what training learned."""
        observing = [bool(fq.observer_enabled[0]) for fq in self._inputs.values()]
        for fq in self._inputs.values():
            fq.enable_observer(False)
        try:
            yield
        finally:
            for fq, on in zip(self._inputs.values(), observing):
                fq.enable_observer(on)

    def activation_ranges(self) -> dict[str, tuple[float, float]]:
        """Per linear layer, the (min, max) of its input that its uint8 scale was computed from."""
        out = {}
        for name in self.linears:
            observer = self._inputs[name].activation_post_process
            lo, hi = float(observer.min_val), float(observer.max_val)
            if lo > hi:  # never observed (e.g. a head the run did not use)
                continue
            out[name] = (min(lo, 0.0), max(hi, 0.0))
        return out

    def restore(self, ranges: dict[str, tuple[float, float]], fp32_scopes: Collection[str] = ()) -> None:
        """Input ranges as saved (by node scope), switched on and held still: the checkpoint runs in
        PyTorch as its int8 graph will (the weights' and tables' ranges follow from the weights).
        Layers in ``fp32_scopes`` (kept fp32 at export) or without a range stay unrounded."""
        self.enable(True)
        for name in self.linears:
            fq = self._inputs[name]
            scope = graph_scope(name)
            if scope in fp32_scopes or scope not in ranges:
                for off in (fq, self._weights[name]):
                    off.enable_fake_quant(False)
                    off.enable_observer(False)
                continue
            lo, hi = ranges[scope]
            observer = fq.activation_post_process
            observer.min_val.fill_(lo)
            observer.max_val.fill_(hi)
            scale, zero_point = observer.calculate_qparams()
            fq.scale.copy_(scale)
            fq.zero_point.copy_(zero_point)
        for fq in self._inputs.values():
            fq.enable_observer(False)

    def save(self, folder: Path) -> None:
        """The ranges beside the checkpoint, keyed by the ONNX node scope of each layer."""
        ranges = {graph_scope(n): [lo, hi] for n, (lo, hi) in self.activation_ranges().items()}
        record = {"weights": WEIGHTS, "activations": "uint8 asymmetric per tensor", "ranges": ranges}
        (folder / RANGES_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")


def read_ranges(folder: Path) -> dict[str, tuple[float, float]] | None:
    """A QAT checkpoint's activation ranges by node scope; ``None`` for a checkpoint trained without."""
    path = folder / RANGES_FILE
    if not path.exists():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return {scope: (float(lo), float(hi)) for scope, (lo, hi) in record["ranges"].items()}
