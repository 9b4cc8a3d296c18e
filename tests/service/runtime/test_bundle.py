"""A broken bundle stops startup with one clear message, never a stack trace at request time."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from tiny_bundle import write_bundle

from service.errors import BundleError
from service.runtime.bundle import load_bundle
from service.runtime.session import OnnxSession


def test_defaults_when_serving_json_is_absent(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    (folder / "serving.json").unlink()
    bundle = load_bundle(folder)
    serving = bundle.serving
    assert (serving.window.max_length, serving.window.stride, serving.strategy.value, bundle.name) == (128, 32, "first", "b")


def _n_labels(folder: Path) -> int:
    return len(json.loads((folder / "config.json").read_text())["id2label"])


def _crf(n: int) -> dict[str, object]:
    return {"transitions": [[0.0] * n] * n, "start": [0.0] * n, "end": [0.0] * n}


def _set_serving(folder: Path, **values: object) -> None:
    serving = json.loads((folder / "serving.json").read_text())
    (folder / "serving.json").write_text(json.dumps({**serving, **values}))


def test_crf_bundle_defaults_to_crf_decoding(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    serving = json.loads((folder / "serving.json").read_text())
    serving.pop("decoding", None)
    (folder / "serving.json").write_text(json.dumps({**serving, "crf": _crf(_n_labels(folder))}))
    bundle = load_bundle(folder)
    transitions = bundle.serving.transitions
    assert bundle.serving.default_decoding.value == "crf" and transitions is not None and len(transitions) == _n_labels(folder)


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json missing"),
        (lambda f: (f / "model.onnx").unlink(), "model.onnx missing"),
        (lambda f: (f / "config.json").write_text("{broken"), "config.json unreadable"),
        (lambda f: (f / "config.json").write_text(json.dumps({"model_type": "bert"})), "no id2label"),
        (lambda f: (f / "tokenizer.json").write_text("{}"), "tokenizer.json unreadable"),
        (lambda f: (f / "serving.json").write_text(json.dumps({"max_length": 4096})), "exceeds the model's 512 positions"),
        (lambda f: (f / "serving.json").write_text(json.dumps({"decoding": "crf"})), "needs a model trained with a CRF head"),
        (lambda f: (f / "serving.json").write_text(json.dumps({"crf": {"transitions": [[0.0]]}})), "'crf' must be an object"),
        (lambda f: (f / "serving.json").write_text(json.dumps({"crf": _crf(2)})), "CRF scores cover 2 labels"),
        (lambda f: _set_serving(f, crf=_crf(_n_labels(f)), aggregation_strategy="average"), "aggregation_strategy must be 'first'"),
        (lambda f: _set_serving(f, calibration={"temperature": "hot"}), "calibration temperature must be a positive number"),
        (lambda f: _set_serving(f, calibration={"temperature": -1.0}), "calibration temperature must be a positive number"),
        (lambda f: _set_serving(f, calibration=[1.2]), "calibration temperature must be a positive number"),
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


def test_per_batch_quantisation_is_refused(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    model = onnx.load(str(folder / "model.onnx"))
    # Any float tensor will do: the op alone makes a graph's answers depend on its batch-mates.
    source = next(n.output[0] for n in model.graph.node if n.op_type == "Gather")
    model.graph.node.append(onnx.helper.make_node("DynamicQuantizeLinear", [source], ["q", "q_scale", "q_zero"], name="dq"))
    onnx.save(model, str(folder / "model.onnx"))
    with pytest.raises(BundleError, match=r"quantises activations per batch \(DynamicQuantizeLinear\)"):
        load_bundle(folder)


def test_window_alignment_is_read_from_serving_json(tmp_path: Path) -> None:
    folder = write_bundle(tmp_path / "b")
    _set_serving(folder, window_align="sentences")
    assert load_bundle(folder).serving.window.align.value == "sentences"
    _set_serving(folder, window_align="paragraphs")
    with pytest.raises(BundleError, match="serving.json.*paragraphs"):
        load_bundle(folder)
