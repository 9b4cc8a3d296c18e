"""A broken bundle stops startup with one clear message, never a stack trace at request time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_bundle import write_bundle

from service.errors import BundleError
from service.runtime.bundle import load_bundle
from service.runtime.session import OnnxSession


def test_defaults_when_serving_json_is_absent(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    (folder / "serving.json").unlink()
    bundle = load_bundle(folder)
    assert (bundle.max_length, bundle.stride, bundle.strategy, bundle.name) == (128, 32, "first", "b")


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json missing"),
        (lambda f: (f / "model.onnx").unlink(), "model.onnx missing"),
        (lambda f: (f / "config.json").write_text("{broken"), "config.json unreadable"),
        (lambda f: (f / "config.json").write_text(json.dumps({"model_type": "bert"})), "no id2label"),
        (lambda f: (f / "tokenizer.json").write_text("{}"), "tokenizer.json unreadable"),
        (lambda f: (f / "serving.json").write_text(json.dumps({"max_length": 4096})), "exceeds the model's 512 positions"),
    ],
)
def test_broken_bundles(tmp_path: Path, breakage: object, message: str) -> None:
    folder = write_bundle(tmp_path / "b")
    breakage(folder)  # type: ignore[operator]
    with pytest.raises(BundleError, match=message):
        load_bundle(folder)


def test_corrupt_graph(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    (folder / "model.onnx").write_bytes(b"not an onnx file")
    bundle = load_bundle(folder)
    with pytest.raises(BundleError, match="model.onnx cannot be loaded"):
        OnnxSession(bundle.onnx_path, len(bundle.scheme))
