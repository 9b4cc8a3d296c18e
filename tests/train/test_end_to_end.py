"""Tiny random BERT built here: train a few steps -> export with optimum -> serve over HTTP."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("optimum")

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "p53", "kinase", "binds", "myc", "gene", "in", "cells", ".", "##x"]


def make_base_model(folder: Path) -> Path:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


def make_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        text = "the p53 kinase binds the myc gene in cells ." * (1 + i % 3)
        (folder / f"d{i}.txt").write_text(text, encoding="utf-8")
        anns, step = [], len("the p53 kinase binds the myc gene in cells .")
        for r in range(1 + i % 3):
            base = r * step
            anns.append(f"T{2 * r + 1}\tprotein {base + 4} {base + 14}\tp53 kinase")
            anns.append(f"T{2 * r + 2}\tDNA {base + 25} {base + 33}\tmyc gene")
        (folder / f"d{i}.ann").write_text("\n".join(anns) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.export import run_export
    from train.finetune import TrainConfig, train

    root = tmp_path_factory.mktemp("e2e")
    base = make_base_model(root / "base")
    corpus = make_corpus(root / "corpus")
    best = train(
        TrainConfig(
            train=[str(corpus)],
            output=str(root / "ckpt"),
            base_model=str(base),
            epochs=2,
            batch_size=4,
            learning_rate=5e-3,
            max_length=24,
            stride=6,
            dev_fraction=0.25,
            dropout=0.0,
        )
    )
    assert (root / "ckpt" / "metrics.jsonl").read_text().count("\n") == 2
    assert best["epoch"] in (1, 2)
    args = argparse.Namespace(
        checkpoint=str(root / "ckpt"),
        output=str(root / "bundle"),
        data=[str(corpus)],
        dev_fraction=0.25,
        seed=13,
        quantize="static",
        tolerance=1e-3,
        tag_map=None,
        optimization_level=1,
        calibration_windows=16,
        calibration_method="minmax",
        exclude_nodes=[],
        keep_fp32=["ffn_out"],
        name="e2e",
        version="0",
    )
    assert run_export(args) == 0
    return root / "bundle"


def test_bundle_has_card_and_parity(exported: Path) -> None:
    parity = json.loads((exported / "parity.json").read_text())
    assert parity["max_abs_logit_diff_fp32"] < 1e-3
    assert set(parity["dev"]) == {"pytorch", "onnx_fp32", "onnx_int8"}
    assert "## Reproduce" in (exported / "MODEL_CARD.md").read_text()


def test_optimum_can_load_the_bundle(exported: Path) -> None:
    from optimum.onnxruntime import ORTModelForTokenClassification

    model = ORTModelForTokenClassification.from_pretrained(exported)
    assert model.config.id2label[0] == "O"


async def test_service_serves_the_exported_bundle(exported: Path) -> None:
    app = create_app(Settings(model_path=exported))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.post("/ner", json={"text": "the p53 kinase binds the myc gene in cells ."})
            assert response.status_code == 200
            body = response.json()
            assert body["model"]["name"] == "e2e"
            text = "the p53 kinase binds the myc gene in cells ."
            assert all(text[e["start"] : e["end"]] == e["text"] for e in body["entities"])


def test_parity_check_fails_loudly(exported: Path, tmp_path: Path) -> None:
    from train.export import ParityError, run_export

    checkpoint = exported.parent / "ckpt"
    args = argparse.Namespace(
        checkpoint=str(checkpoint),
        output=str(tmp_path / "strict"),
        data=[],
        dev_fraction=0.25,
        seed=13,
        quantize="none",
        tolerance=0.0,
        tag_map=None,
        optimization_level=0,
        calibration_windows=16,
        calibration_method="minmax",
        exclude_nodes=[],
        keep_fp32=[],
        name="strict",
        version="0",
    )
    with pytest.raises(ParityError, match="differs from PyTorch"):
        run_export(args)
