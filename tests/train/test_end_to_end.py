"""Tiny random BERT built here: train a few steps -> export with optimum -> serve over HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("optimum")

from tiny_bert import export_bundle, make_base_model, make_corpus, tiny_train_config  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.finetune import train

    root = tmp_path_factory.mktemp("e2e")
    base = make_base_model(root / "base")
    corpus = make_corpus(root / "corpus")
    best = train(tiny_train_config(base, corpus, root / "ckpt", epochs=2))
    records = [json.loads(line) for line in (root / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("epoch") for r in records] == [None, 1, 2] and records[0]["loss"] == "ce"
    dev_f1 = [r["dev"]["micro"]["f1"] for r in records[1:]]
    assert best["epoch"] == 1 + dev_f1.index(max(dev_f1))  # the first epoch with the highest dev F1 is kept
    assert best == records[best["epoch"]]
    flags = ["--data", str(corpus), "--dev-fraction", "0.25", "--quantize", "static", "--calibration-windows", "16"]
    named = ["--consistency", "first_mention", "--name", "e2e", "--version", "0"]
    assert export_bundle(root / "ckpt", root / "bundle", *flags, "--keep-fp32", "ffn_out", *named) == 0
    return root / "bundle"


def test_bundle_has_card_and_parity(exported: Path) -> None:
    parity = json.loads((exported / "parity.json").read_text())
    assert parity["max_abs_logit_diff_fp32"] < 1e-3
    assert set(parity["dev"]) == {"pytorch", "onnx_fp32", "onnx_int8"}
    assert "## Reproduce" in (exported / "MODEL_CARD.md").read_text()


def test_sentence_aligned_training_is_served_so(tmp_path: Path) -> None:
    """Windows cut at sentence starts in training are the checkpoint's (and so the bundle's) serving default."""
    from train.finetune import train

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    sentence = "The p53 kinase binds the myc gene in cells. "
    for i in range(8):  # several windows of 24 tokens per document, with capitalised sentence starts to cut at
        (corpus / f"d{i}.txt").write_text(sentence * 4, encoding="utf-8")
        spans = [(k * len(sentence) + 4, k * len(sentence) + 14) for k in range(4)]
        (corpus / f"d{i}.ann").write_text("".join(f"T{n}\tprotein {s} {e}\tp53 kinase\n" for n, (s, e) in enumerate(spans)))
    config = tiny_train_config(make_base_model(tmp_path / "base"), corpus, tmp_path / "ckpt", window_align="sentences")
    train(config)
    assert json.loads((tmp_path / "ckpt" / "serving.json").read_text())["window_align"] == "sentences"


def test_optimum_can_load_the_bundle(exported: Path) -> None:
    from optimum.onnxruntime import ORTModelForTokenClassification

    model = ORTModelForTokenClassification.from_pretrained(exported)
    assert model.config.id2label[0] == "O"


async def test_service_serves_the_exported_bundle(exported: Path) -> None:
    app = create_app(Settings(model_path=exported, max_text_chars=10_000))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            response = await client.post("/ner", json={"text": "the p53 kinase binds the myc gene in cells ."})
            assert response.status_code == 200
            body = response.json()
            assert body["model"]["name"] == "e2e"
            text = "the p53 kinase binds the myc gene in cells ."
            assert all(text[e["start"] : e["end"]] == e["text"] for e in body["entities"])


def test_parity_check_fails_loudly(exported: Path, tmp_path: Path) -> None:
    from train.export import ParityError

    checkpoint = exported.parent / "ckpt"
    flags = ["--quantize", "none", "--tolerance", "0", "--optimization-level", "0", "--name", "strict", "--version", "0"]
    with pytest.raises(ParityError, match="differs from PyTorch"):
        export_bundle(checkpoint, tmp_path / "strict", *flags)


def test_export_writes_golden_answers_that_check_passes(exported: Path) -> None:
    from service.cli import main
    from train.golden_texts import GOLDEN_TEXTS

    golden = json.loads((exported / "golden.json").read_text())
    assert [t["text"] for t in golden["texts"]] == list(GOLDEN_TEXTS)
    assert golden["made_on"]["graph"] == "int8_static_s7" and golden["made_on"]["cpu"]["model"]
    assert main(["check", "--model-path", str(exported)]) == 0  # this machine reproduces the bundle's answers
    # made under the default the bundle is released with, which the check serves by
    assert json.loads((exported / "serving.json").read_text())["consistency"] == "first_mention"


def test_export_fits_a_temperature_and_draws_the_reliability_diagram(exported: Path) -> None:
    serving = json.loads((exported / "serving.json").read_text())
    parity = json.loads((exported / "parity.json").read_text())
    calibration = parity["calibration"]
    assert serving["calibration"]["temperature"] == calibration["temperature"] > 0
    assert calibration["nll_after"] <= calibration["nll_before"] + 1e-9  # the fitted T is at least as good as T = 1
    assert (exported / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "## Score calibration" in (exported / "MODEL_CARD.md").read_text()
