"""Quantisation-aware fine-tuning on a tiny BERT: what training simulates is what the exported int8 graph computes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("optimum")

from tiny_bert import export_bundle, make_base_model, make_corpus, tiny_train_config  # noqa: E402

from train.qat import RANGES_FILE, QuantSim, graph_scope, read_ranges  # noqa: E402

INT8 = ["--quantize", "static", "--keep-fp32", "attention_scores", "--dev-fraction", "0.25", "--name", "qat", "--version", "0"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("qat")
    torch.manual_seed(0)  # the same tiny weights every run: what int8 rounds depends on the values
    return make_base_model(root / "base"), make_corpus(root / "corpus")


@pytest.fixture(scope="module")
def qat_run(tiny: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    from train.finetune import train

    base, corpus = tiny
    out = tmp_path_factory.mktemp("qat-run") / "ckpt"
    best = train(tiny_train_config(base, corpus, out, epochs=2, qat_epochs=1, head="crf", crf_learning_rate=0.1))
    return out, best


def _token_classifier(base: Path) -> Any:
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(0)
    return AutoModelForTokenClassification.from_pretrained(base, num_labels=5).eval()


def test_switched_off_the_simulation_is_the_fp32_model_and_its_state_dict(tiny: tuple[Path, Path]) -> None:
    model = _token_classifier(tiny[0])
    ids = torch.tensor([[2, 5, 6, 7, 8, 5, 9, 10, 3]])
    plain = model(input_ids=ids).logits
    keys = set(model.state_dict())
    sim = QuantSim(model)
    assert torch.equal(model(input_ids=ids).logits, plain)
    assert set(model.state_dict()) == keys  # the checkpoint saves as any other
    sim.enable()
    rounded = model(input_ids=ids).logits  # still eval mode: no dropout, so only the rounding differs
    assert not torch.equal(rounded, plain)
    model.train()
    model(input_ids=ids).logits.sum().backward()  # straight through the rounding, down to the embeddings
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert {graph_scope(n) for n in sim.activation_ranges()} >= {"/classifier", "/bert/encoder/layer.1/output/dense"}


def test_only_the_int8_aware_epochs_compete_and_their_ranges_are_kept(qat_run: tuple[Path, dict[str, Any]]) -> None:
    out, best = qat_run
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()[1:]]
    assert [(r["epoch"], r["phase"]) for r in records] == [(1, "finetune"), (2, "finetune-qat")]
    assert best["epoch"] == 2  # epoch 1 was scored in fp32: it says little of its int8 graph
    ranges = read_ranges(out)
    assert ranges is not None and len(ranges) == 2 * 6 + 1  # six linear layers in each of two layers, and the classifier
    assert all(hi > lo for lo, hi in ranges.values())
    assert json.loads((out / "serving.json").read_text())["train_config"]["qat_epochs"] == 1


def test_the_exported_int8_graph_is_what_training_simulated(
    tiny: tuple[Path, Path], qat_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    out, best = qat_run
    assert export_bundle(out, tmp_path / "bundle", "--data", str(tiny[1]), *INT8) == 0
    parity = json.loads((tmp_path / "bundle" / "parity.json").read_text())
    assert parity["int8_ranges"] == "trained (--qat-epochs)"
    # int8 rounding moves the logits; the simulation moves them the same way, to float rounding
    # (a value on a rounding boundary may round the other way in one framework, hence a typical gap)
    agreement = parity["int8_vs_simulated"]
    assert parity["max_abs_logit_diff_int8"] > 1e-3
    assert agreement["mean_abs_logit_diff"] < 0.05 * agreement["mean_abs_logit_diff_fp32"]
    assert parity["dev"]["onnx_int8"]["micro"]["f1"] == pytest.approx(best["dev"]["micro"]["f1"])


def test_export_refuses_a_weight_format_the_run_did_not_simulate(
    tiny: tuple[Path, Path], qat_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="--int8-weights s7"):
        export_bundle(qat_run[0], tmp_path / "bundle", "--data", str(tiny[1]), *INT8, "--int8-weights", "s8")


def test_calibration_batches_share_one_shape_only_where_the_calibrator_stacks_them() -> None:
    from train.quantize import WindowReader

    rows = [np.arange(1, n + 1) for n in (3, 5, 2, 4, 6)]

    def shapes(reader: WindowReader) -> list[tuple[int, ...]]:
        return [batch["input_ids"].shape for batch in iter(reader.get_next, None)]

    assert shapes(WindowReader(rows, ["input_ids", "attention_mask"], batch_size=2)) == [(2, 5), (2, 4), (1, 6)]
    assert shapes(WindowReader(rows, ["input_ids", "attention_mask"], batch_size=2, uniform=True)) == [(2, 6), (2, 6)]


def test_a_qat_run_can_be_exported_over_freshly_calibrated_ranges(
    tiny: tuple[Path, Path], qat_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Its fp32 weights are a checkpoint like any other: post-training ranges are then one measured alternative."""
    flags = ("--int8-ranges", "calibrated", "--calibration-method", "percentile")
    assert export_bundle(qat_run[0], tmp_path / "bundle", "--data", str(tiny[1]), *INT8, *flags) == 0
    parity = json.loads((tmp_path / "bundle" / "parity.json").read_text())
    assert parity["int8_ranges"] == "calibrated (percentile)"
    assert "int8_vs_simulated" not in parity  # no simulation to compare against


def test_int8_graphs_round_only_what_the_matmuls_read(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """Every static int8 export, with or without QAT: the residual stream and the MatMul outputs stay fp32."""
    from train.finetune import train

    base, corpus = tiny
    train(tiny_train_config(base, corpus, tmp_path / "ckpt"))
    assert (tmp_path / "ckpt" / RANGES_FILE).exists() is False
    flags = ["--quantize", "static", "--keep-fp32", "attention_scores", "--dev-fraction", "0.25"]
    assert export_bundle(tmp_path / "ckpt", tmp_path / "bundle", "--data", str(corpus), *flags) == 0
    assert json.loads((tmp_path / "bundle" / "parity.json").read_text())["int8_ranges"] == "calibrated (minmax)"
    graph = onnx.load(str(tmp_path / "bundle" / "model.onnx")).graph
    producer = {o: n for n in graph.node for o in n.output}
    weights = {i.name for i in graph.initializer}
    dequantized = {
        n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] not in weights and "Gather" not in n.input[0]
    }
    readers = [n for n in graph.node if any(i in dequantized for i in n.input)]
    assert readers and {n.op_type for n in readers} == {"MatMul"}
    normed = {o for n in graph.node if n.op_type == "LayerNormalization" for o in n.output}
    residual_adds = [n for n in graph.node if n.op_type == "Add" and normed & set(n.input)]
    assert len(residual_adds) == 2 * 2  # after attention and after the FFN, in both layers, fed the fp32 LayerNorm output
    quantized_outputs = {n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    assert not any(producer[t].op_type == "MatMul" for t in quantized_outputs if t in producer)


def test_qat_epochs_must_fit_the_run(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--qat-epochs"):
        tiny_train_config(*tiny, tmp_path / "x", epochs=2, qat_epochs=3)


def test_ranges_of_another_model_are_refused(qat_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    from train.quantize import range_overrides

    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="/other/MatMul")],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 2])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])],
        [onnx.numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")],
    )
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "other.onnx"))
    assert range_overrides(tmp_path / "other.onnx", {"/other": (-1.0, 1.0)}) == {"x": [{"rmin": np.float32(-1.0), "rmax": np.float32(1.0)}]}
    with pytest.raises(ValueError, match="not this model's ranges"):
        range_overrides(tmp_path / "other.onnx", read_ranges(qat_run[0]) or {})


def test_a_crf_checkpoint_continues_with_its_transitions_and_only_on_its_labels(
    tiny: tuple[Path, Path], qat_run: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """How QAT starts from a shipped model: ``--base-model`` the checkpoint, ``--head crf``."""
    from service.bundle_format import read_serving
    from train.data import load_documents
    from train.task import prepare

    checkpoint = qat_run[0]
    config = tiny_train_config(checkpoint, tiny[1], tmp_path / "more", head="crf", qat_epochs=1)
    task = prepare(config, *load_documents(config))
    saved = read_serving(checkpoint).transitions
    assert saved is not None and task.tagger is not None
    np.testing.assert_allclose(task.tagger.crf.to_transitions().matrix, saved.matrix, atol=1e-6)
    assert np.abs(saved.start).max() > 0  # learned, so the equality above is not two fresh zero heads

    other = tmp_path / "proteins"
    other.mkdir()
    (other / "d.txt").write_text("the p53 kinase binds", encoding="utf-8")
    (other / "d.ann").write_text("T1\tprotein 4 14\tp53 kinase\n", encoding="utf-8")
    config = tiny_train_config(checkpoint, other, tmp_path / "other", head="crf", dev_fraction=0.0, dev=[str(other)])
    with pytest.raises(ValueError, match="only on data with its labels"):
        prepare(config, *load_documents(config))


def test_any_token_classification_checkpoint_is_label_checked_and_an_encoder_is_not(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    """A Hugging Face NER checkpoint without serving.json: same-sized classifier rows would mean other labels."""
    from transformers import AutoModelForTokenClassification

    from train.data import load_documents
    from train.task import prepare

    base, corpus = tiny
    config = tiny_train_config(base, corpus, tmp_path / "plain")
    prepare(config, *load_documents(config))  # a masked-LM encoder: no labels to check
    labels = ["O", "B-chemical", "I-chemical", "B-disease", "I-disease"]  # as many as the tiny corpus's, not the same
    hf = AutoModelForTokenClassification.from_pretrained(base, num_labels=5, id2label=dict(enumerate(labels)))
    hf.save_pretrained(tmp_path / "hf-ner")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (base / name).exists():
            (tmp_path / "hf-ner" / name).write_bytes((base / name).read_bytes())
    config = tiny_train_config(tmp_path / "hf-ner", corpus, tmp_path / "other")
    with pytest.raises(ValueError, match="only on data with its labels"):
        prepare(config, *load_documents(config))


def test_a_run_whose_steps_end_before_its_int8_epochs_says_so(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from train.finetune import train

    with pytest.raises(ValueError, match="no epoch .* ran in simulated int8"):
        train(tiny_train_config(*tiny, tmp_path / "run", epochs=2, qat_epochs=1, max_steps=2))


def test_restored_ranges_leave_the_layers_export_kept_fp32_unrounded(qat_run: tuple[Path, dict[str, Any]]) -> None:
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(qat_run[0]).eval()
    ranges = read_ranges(qat_run[0]) or {}
    sim = QuantSim(model)
    sim.restore({k: v for k, v in ranges.items() if "layer.1/output" not in k}, fp32_scopes={"/classifier"})
    rounded = {graph_scope(n) for n, fq in sim._inputs.items() if bool(fq.fake_quant_enabled[0])}
    assert "/classifier" not in rounded and "/bert/encoder/layer.1/output/dense" not in rounded  # kept; no range
    assert "/bert/encoder/layer.0/output/dense" in rounded and len(rounded) == len(ranges) - 2
