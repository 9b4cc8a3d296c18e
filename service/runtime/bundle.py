"""Load and validate a model bundle; fail fast with one clear message on any mismatch.

A bundle is what optimum's ONNX export writes (``model.onnx``, ``config.json``, fast tokenizer
files) plus an optional ``serving.json``; :mod:`service.bundle_format` owns the format, this
module checks that the files agree with each other and with the graph.
"""

from __future__ import annotations

import hashlib
import mmap
import re
from dataclasses import dataclass
from pathlib import Path

from service.bundle_format import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, ServingConfig, pipeline_for, read_json_object, read_serving
from service.decoding.labels import LabelScheme
from service.decoding.windows import TextEncoder
from service.errors import BundleError


@dataclass(frozen=True)
class Bundle:
    path: Path
    onnx_path: Path
    sha256: str
    scheme: LabelScheme
    encoder: TextEncoder
    pad_id: int
    serving: ServingConfig

    @property
    def name(self) -> str:
        return self.serving.name or self.path.name

    @property
    def version(self) -> str:
        return self.serving.version or "0"


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


def load_bundle(path: Path) -> Bundle:
    if not path.is_dir():
        raise BundleError(f"model bundle folder not found: {path}")
    onnx_path = path / MODEL_FILE
    if not onnx_path.is_file():
        raise BundleError(f"model.onnx missing in {path}")
    if onnx_path.stat().st_size and (op := per_batch_quantisation(onnx_path)):
        raise BundleError(
            f"model.onnx quantises activations per batch ({op}): a text's entities would depend on what it is batched "
            "with; export with static int8 (bioner export --quantize static) or fp32"
        )
    config = read_json_object(path / CONFIG_FILE, CONFIG_FILE)
    if not config.get("id2label"):
        raise BundleError(f"config.json in {path} has no id2label")
    try:
        scheme = LabelScheme.from_id2label(config["id2label"])
    except (ValueError, KeyError) as exc:
        raise BundleError(f"config.json id2label invalid: {exc}") from exc
    tokenizer_path = path / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise BundleError(f"tokenizer.json missing in {path} (a fast tokenizer is required)")
    try:
        encoder = TextEncoder.from_file(tokenizer_path)
    except Exception as exc:  # tokenizers raises plain Exception on bad files
        raise BundleError(f"tokenizer.json unreadable: {exc}") from exc
    serving = read_serving(path)
    limit = int(config.get("max_position_embeddings", serving.window.max_length))
    if serving.window.max_length > limit:
        raise BundleError(f"serving.json max_length {serving.window.max_length} exceeds the model's {limit} positions")
    if serving.transitions is not None and len(serving.transitions) != len(scheme):
        raise BundleError(f"serving.json CRF scores cover {len(serving.transitions)} labels; config.json has {len(scheme)}")
    try:  # the bundle must be servable as released: the pipeline's own checks, run once here
        pipeline_for(serving, encoder, scheme)
    except ValueError as exc:
        raise BundleError(f"serving.json in {path}: {exc}") from exc
    return Bundle(
        path=path,
        onnx_path=onnx_path,
        sha256=file_sha256(onnx_path),
        scheme=scheme,
        encoder=encoder.with_token_types(serving.token_types),
        pad_id=int(config.get("pad_token_id") or 0),
        serving=serving,
    )
