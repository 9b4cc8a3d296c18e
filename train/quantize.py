"""int8 schemes for the exported graph, each written as its own ``model.onnx``.

- ``dynamic``: optimum's plain dynamic quantisation (activations quantised per batch at run
  time). Fast, but its ranges are taken over the whole batch, padding included, so a text's
  entities can change with its batch-mates: the service must not serve it.
- ``static``: ONNX Runtime's static QDQ quantisation, calibrated on training windows, weights per
  channel. Activation ranges are fixed at export, so every row is computed the same way whatever
  it is batched with. MatMul/Gemm are quantised, and the embedding tables (Gather) unless told
  not to (they are most of the file); nodes named in ``exclude`` stay fp32.

Weight formats (``weights``), because x86 int8 kernels differ by instruction set:
- ``s8``: full-range signed weights. Without VNNI, ONNX Runtime multiplies u8 activations by s8
  weights with ``vpmaddubsw``, which adds pairs of products into int16 and saturates; with VNNI
  (``vpdpbusd``) the sums are exact. The same graph then gives different entities on different
  CPUs (measured: 0.04 F1 points lost to int8 on a VNNI CPU, 0.53 on an AVX2 one).
- ``s7``: reduced range, weights in [-64, 64]: a pair of products is at most 2 x 255 x 64 =
  32,640, inside int16, so nothing saturates and every instruction set computes the same
  integers. Costs one bit of weight precision.
- ``u8``: unsigned weights, which ONNX Runtime runs on its u8 x u8 kernels.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from service.decoding.pipeline import pad_windows
from service.decoding.token_types import unpack


class WindowReader:
    """Feeds calibration batches of real training windows to ONNX Runtime's calibrator.

    ``uniform``: every batch has one shape. The histogram calibrators (percentile, entropy) stack
    all batches' activations into one array and fail on ragged ones, so their rows are padded to
    the longest window and a trailing partial batch is dropped when full batches exist. Min-max
    keeps each batch padded to its own longest row: fewer padding positions in its ranges."""

    def __init__(self, rows: Sequence[np.ndarray], input_names: Sequence[str], batch_size: int = 8, uniform: bool = False) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(self._make(rows, input_names, batch_size, uniform))

    @staticmethod
    def _make(rows: Sequence[np.ndarray], names: Sequence[str], batch_size: int, uniform: bool) -> list[dict[str, np.ndarray]]:
        width = max(len(r) for r in rows) if uniform else 0
        whole = len(rows) - len(rows) % batch_size if uniform and len(rows) >= batch_size else len(rows)
        out = []
        for lo in range(0, whole, batch_size):
            packed, mask = pad_windows(rows[lo : min(lo + batch_size, whole)], width=width)
            ids, types = unpack(packed)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in names:
                feed["token_type_ids"] = types
            out.append(feed)
        return out

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # pragma: no cover - part of the reader protocol
        pass


def quantize_dynamic(src_dir: Path, dst_dir: Path, per_channel: bool = False) -> Path:
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=per_channel)
    with tempfile.TemporaryDirectory() as tmp:
        ORTQuantizer.from_pretrained(src_dir, file_name="model.onnx").quantize(config, tmp, file_suffix=None)
        dst_dir.mkdir(parents=True, exist_ok=True)
        shutil.move(str(Path(tmp) / "model.onnx"), dst_dir / "model.onnx")
    return dst_dir / "model.onnx"


def matmul_nodes(model_path: Path) -> list[str]:
    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")]


# Groups of a BERT graph's quantisable nodes, by the role the node plays in every layer.
NODE_GROUPS = {
    "attention_scores": lambda n, w: not w and n.op_type == "MatMul",  # Q.K^T and softmax.V: activation x activation
    "qkv": lambda n, w: w and "/attention/self/" in n.name,
    "attention_out": lambda n, w: w and "/attention/output/" in n.name,
    "ffn_in": lambda n, w: w and "/intermediate/" in n.name,
    "ffn_out": lambda n, w: w and "/output/dense" in n.name and "/attention/" not in n.name,
    "classifier": lambda n, w: w and "classifier" in n.name,
    "embeddings": lambda n, w: n.op_type == "Gather" and w,
}


def node_groups(model_path: Path, heads: Sequence[str] = ()) -> dict[str, list[str]]:
    """Names of the MatMul/Gemm/Gather nodes in each group of :data:`NODE_GROUPS`.

    Works on the fp32 graph and on its QDQ int8 form. A joint graph names its classifiers after its
    heads (``/model/<name>/``), not ``classifier``: pass ``heads`` so that they land in that group too.
    """
    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    # In a QDQ (int8) graph a weight reaches its MatMul through a DequantizeLinear of an initializer.
    weights |= {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights}
    groups: dict[str, list[str]] = {name: [] for name in NODE_GROUPS}
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Gather"):
            continue
        has_weight = any(i in weights for i in node.input)
        if has_weight and node.op_type != "Gather" and any(node.name.startswith(f"/model/{h}/") for h in heads):
            groups["classifier"].append(node.name)
            continue
        for name, test in NODE_GROUPS.items():
            if test(node, has_weight):
                groups[name].append(node.name)
                break
    return groups


def quantize_static(
    src_model: Path,
    dst_model: Path,
    rows: Sequence[np.ndarray],
    exclude: Sequence[str] = (),
    method: str = "minmax",
    per_channel: bool = True,
    embeddings: bool = True,
    weights: str = "s7",
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """``ranges``: the input range of each layer by node scope, from quantisation-aware training
    (:mod:`train.qat`); those inputs are quantised over the ranges the model learned with, not
    over calibrated ones. The calibration windows still range whatever else is quantised."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
    names = [i.name for i in onnx.load(str(src_model), load_external_data=False).graph.input]
    src_model, dst_model = src_model.resolve(), dst_model.resolve()
    # ONNX Runtime's pre-processing and calibration drop scratch files in the working folder.
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src_model), str(prepared), skip_symbolic_shape=True)
        overrides = range_overrides(prepared, ranges) if ranges else {}
        ort_quantize_static(
            str(prepared),
            str(dst_model),
            WindowReader(rows, names, uniform=method != "minmax"),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul", "Gemm", *(["Gather"] if embeddings else [])],
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QUInt8 if weights == "u8" else QuantType.QInt8,
            reduce_range=weights == "s7",
            nodes_to_exclude=list(exclude),
            calibrate_method=methods[method],
            extra_options={
                "ActivationSymmetric": False,
                "WeightSymmetric": weights != "u8",
                "CalibPercentile": 99.999,
                "CalibTensorRangeSymmetric": False,
                "TensorQuantOverrides": overrides,
                "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
            },
        )
    rounded_where_needed(dst_model, exclude)
    return dst_model


def rounded_where_needed(model_path: Path, kept_fp32: Collection[str] = ()) -> int:
    """Only the quantised MatMul/Gemm nodes read a tensor's rounded copy; every other reader (``kept_fp32``
    MatMuls included) gets it back in fp32.

    ONNX Runtime's QDQ quantiser rewires *every* reader of a quantised tensor to its dequantised
    copy. In a BERT graph that puts the rounding into the residual stream (the Add after attention
    and after the FFN reads the uint8-rounded LayerNorm output the next Q/K/V or FFN MatMul needs),
    which no training simulates and which costs accuracy for no speed: the Add runs in fp32 either
    way. Tensors that a ``Gather`` produces keep their pair (the table is int8, the pair only
    restates its grid, and ONNX Runtime fuses it into an int8 Gather). Returns how many inputs were
    rewired; pairs left without readers are dropped.
    """
    model = onnx.load(str(model_path))
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    quantized = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    fp32_of = {
        n.output[0]: quantized[n.input[0]]
        for n in graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in quantized
        and getattr(producer.get(quantized[n.input[0]]), "op_type", "") != "Gather"
    }
    rewired = 0
    for node in graph.node:
        if node.op_type == "QuantizeLinear" or (node.op_type in ("MatMul", "Gemm") and node.name not in kept_fp32):
            continue
        for i, name in enumerate(node.input):
            if name in fp32_of:
                node.input[i] = fp32_of[name]
                rewired += 1
    outputs = {o.name for o in graph.output}
    while True:  # drop DQ nodes nobody reads, then the Q nodes that fed only them
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("DequantizeLinear", "QuantizeLinear") and n.output[0] not in read]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    onnx.save(model, str(model_path))
    return rewired


def range_overrides(model_path: Path, ranges: Mapping[str, tuple[float, float]]) -> dict[str, list[dict[str, Any]]]:
    """ONNX Runtime's ``TensorQuantOverrides``: each scope's MatMul/Gemm input tensor with its range.

    Layers that read one tensor (query, key and value) share one quantiser in the graph: it gets the
    union of their ranges. Every scope must name a node of the graph, or the ranges belong to
    another model.
    """
    graph = onnx.load(str(model_path), load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    by_tensor: dict[str, tuple[float, float]] = {}
    missing = []
    for scope, (lo, hi) in ranges.items():
        nodes = [n for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.name.startswith(scope + "/")]
        if not nodes:
            missing.append(scope)
        for node in nodes:
            tensor = next(i for i in node.input if i not in weights)
            old = by_tensor.get(tensor, (lo, hi))
            by_tensor[tensor] = (min(old[0], lo), max(old[1], hi))
    if missing:
        raise ValueError(f"{len(missing)} trained ranges name no layer of this graph (first: {missing[0]}): not this model's ranges")
    return {t: [{"rmin": np.float32(lo), "rmax": np.float32(hi)}] for t, (lo, hi) in by_tensor.items()}
