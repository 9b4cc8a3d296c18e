"""Load and validate a model bundle; fail fast with one clear message on any mismatch.

A bundle is what optimum's ONNX export writes (``model.onnx``, ``config.json``, fast tokenizer
files) plus an optional ``serving.json`` with the window length, stride, aggregation strategy,
name and version the model was trained and released with, and, for a CRF model, its
transition scores (``"crf"``).
"""

from __future__ import annotations

import hashlib
import json
import math
import mmap
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.decoding.crf import CRF_KEY, Transitions
from service.decoding.labels import LabelScheme
from service.decoding.windows import TextEncoder
from service.errors import BundleError

SERVING_FILE = "serving.json"
DEFAULT_MAX_LENGTH = 128
DEFAULT_STRIDE = 32


@dataclass(frozen=True)
class Bundle:
    path: Path
    onnx_path: Path
    sha256: str
    name: str
    version: str
    scheme: LabelScheme
    encoder: TextEncoder
    pad_id: int
    max_length: int
    stride: int
    strategy: str
    decoding: str
    extra: dict[str, Any] = field(default_factory=dict)
    transitions: Transitions | None = None
    temperature: float = 1.0


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{what} missing: {path}") from exc
    except (OSError, ValueError) as exc:
        raise BundleError(f"{what} unreadable ({path}): {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{what} must be a JSON object: {path}")
    return data


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# An op_type field in the graph's protobuf: tag 0x22 (NodeProto field 4, bytes), length, name.
# These ops quantise activations with ranges taken over the whole batch, padding included.
_PER_BATCH_OPS = re.compile(rb"\x22[\x13-\x15](DynamicQuantize(?:Linear|MatMul|LSTM))")


def per_batch_quantisation(onnx_path: Path) -> str | None:
    """The first op that quantises activations per batch, if the graph has one.

    Read from the file's bytes (the serving install has no ``onnx`` package): an op_type is
    stored as a tagged, length-prefixed string, which this pattern matches exactly.
    """
    with onnx_path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        view = memoryview(data)
        try:
            found = _PER_BATCH_OPS.search(view)
            return found.group(1).decode() if found else None
        finally:
            view.release()


@dataclass(frozen=True)
class ServingConfig:
    """``serving.json`` with its defaults applied; ``raw`` keeps every key the file had."""

    max_length: int
    stride: int
    strategy: str
    decoding: str
    raw: dict[str, Any]
    transitions: Transitions | None = None
    temperature: float = 1.0  # score calibration fitted at export (serving.json "calibration")


def read_serving(folder: Path) -> ServingConfig:
    """The one reader of ``serving.json``: the service, evaluation and export all use it."""
    path = folder / SERVING_FILE
    serving = _read_json(path, SERVING_FILE) if path.exists() else {}
    transitions = None
    if CRF_KEY in serving:
        try:
            transitions = Transitions.from_json(serving[CRF_KEY])
        except ValueError as exc:
            raise BundleError(f"{SERVING_FILE} in {folder}: {exc}") from exc
    decoding = str(serving.get("decoding", "crf" if transitions is not None else "constrained"))
    if decoding == "crf" and transitions is None:
        raise BundleError(f"{SERVING_FILE} in {folder} asks for CRF decoding but has no 'crf' transition scores")
    calibration = serving.get("calibration") or {}
    raw_t = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else None
    temperature = float(raw_t) if isinstance(raw_t, int | float) and not isinstance(raw_t, bool) else float("nan")
    if not (math.isfinite(temperature) and temperature > 0):
        raise BundleError(f"{SERVING_FILE} in {folder}: calibration temperature must be a positive number, got {temperature}")
    return ServingConfig(
        temperature=temperature,
        max_length=int(serving.get("max_length", DEFAULT_MAX_LENGTH)),
        stride=int(serving.get("stride", DEFAULT_STRIDE)),
        strategy=str(serving.get("aggregation_strategy", "first")),
        decoding=decoding,
        raw=serving,
        transitions=transitions,
    )


def load_bundle(path: Path) -> Bundle:
    if not path.is_dir():
        raise BundleError(f"model bundle folder not found: {path}")
    onnx_path = path / "model.onnx"
    if not onnx_path.is_file():
        raise BundleError(f"model.onnx missing in {path}")
    if onnx_path.stat().st_size and (op := per_batch_quantisation(onnx_path)):
        raise BundleError(
            f"model.onnx quantises activations per batch ({op}): a text's entities would depend on what it is batched "
            "with; export with static int8 (bioner export --quantize static) or fp32"
        )
    config = _read_json(path / "config.json", "config.json")
    if not config.get("id2label"):
        raise BundleError(f"config.json in {path} has no id2label")
    try:
        scheme = LabelScheme.from_id2label(config["id2label"])
    except (ValueError, KeyError) as exc:
        raise BundleError(f"config.json id2label invalid: {exc}") from exc
    tokenizer_path = path / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise BundleError(f"tokenizer.json missing in {path} (a fast tokenizer is required)")
    try:
        encoder = TextEncoder.from_file(tokenizer_path)
    except Exception as exc:  # tokenizers raises plain Exception on bad files
        raise BundleError(f"tokenizer.json unreadable: {exc}") from exc
    serving = read_serving(path)
    limit = int(config.get("max_position_embeddings", serving.max_length))
    if serving.max_length > limit:
        raise BundleError(f"serving.json max_length {serving.max_length} exceeds the model's {limit} positions")
    if serving.transitions is not None and len(serving.transitions) != len(scheme):
        raise BundleError(f"serving.json CRF scores cover {len(serving.transitions)} labels; config.json has {len(scheme)}")
    if serving.transitions is not None and serving.strategy != "first":
        raise BundleError("a CRF bundle is trained on first-subword emissions; serving.json aggregation_strategy must be 'first'")
    return Bundle(
        path=path,
        onnx_path=onnx_path,
        sha256=file_sha256(onnx_path),
        name=str(serving.raw.get("name", path.name)),
        version=str(serving.raw.get("version", "0")),
        scheme=scheme,
        encoder=encoder,
        pad_id=int(config.get("pad_token_id") or 0),
        max_length=serving.max_length,
        stride=serving.stride,
        strategy=serving.strategy,
        decoding=serving.decoding,
        extra=serving.raw,
        transitions=serving.transitions,
        temperature=serving.temperature,
    )
