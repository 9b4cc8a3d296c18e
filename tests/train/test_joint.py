"""Two corpora, one encoder, two heads: train-joint on tiny data, export-joint to one graph, serve it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")

from in_process import app_client  # noqa: E402
from tiny_bert import make_base_model, make_corpus  # noqa: E402

from service.settings import Settings  # noqa: E402
from train.quantize import node_groups  # noqa: E402

TEXT = "the p53 kinase binds the myc gene in cells ."


def make_species_corpus(folder: Path) -> Path:
    """Another corpus's labels over the same words: 'cells' is a Species here, nothing else is tagged."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        text = TEXT * (1 + i % 2)
        spans = [(k * len(TEXT) + 37, k * len(TEXT) + 42) for k in range(1 + i % 2)]
        (folder / f"s{i}.txt").write_text(text, encoding="utf-8")
        lines = [f"T{n + 1}\tSpecies {s} {e}\tcells" for n, (s, e) in enumerate(spans)]
        (folder / f"s{i}.ann").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def joint_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.cli import main

    root = tmp_path_factory.mktemp("joint")
    base = make_base_model(root / "base")
    corpora = [f"jnlpba={make_corpus(root / 'a')}", f"species={make_species_corpus(root / 's')}"]
    flags = ["--base-model", str(base), "--output", str(root / "ckpt"), "--epochs", "3", "--batch-size", "4"]
    flags += ["--learning-rate", "5e-3", "--max-length", "24", "--stride", "6", "--dev-fraction", "0.25", "--dropout", "0"]
    assert main(["train-joint", "--corpora", *corpora, *flags]) == 0
    records = [json.loads(line) for line in (root / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["heads"]["jnlpba"]["labels"] == ["O", "B-DNA", "I-DNA", "B-protein", "I-protein"]
    assert [r["epoch"] for r in records[1:]] == [1, 2, 3] and all(set(r["dev"]) == {"jnlpba", "species"} for r in records[1:])
    best = json.loads((root / "ckpt" / "best.json").read_text())
    assert best["mean_f1"] == max(r["mean_f1"] for r in records[1:]) > 0.5
    export = ["export-joint", "--checkpoint", str(root / "ckpt"), "--output", str(root / "bundle"), "--name", "joint"]
    assert main([*export, "--quantize", "static", "--calibration-windows", "16"]) == 0
    return root / "bundle"


def test_bundle_describes_its_heads(joint_bundle: Path) -> None:
    serving = json.loads((joint_bundle / "serving.json").read_text())
    assert [h["name"] for h in serving["heads"]] == ["jnlpba", "species"]
    report = serving["export"]
    assert report["parity_max_abs_logit_diff"] < 1e-3 and (joint_bundle / "golden.json").exists()
    assert serving["quantization"] == "static" and not (joint_bundle / "model.fp32.onnx").exists()
    assert report["calibration_windows"] == {"jnlpba": 8, "species": 8}  # int8's ranges see every corpus, not the first alone
    assert set(report["dev_f1"]) == {"jnlpba", "species"}  # per head: PyTorch, ONNX fp32 and int8, on its dev split
    assert all(set(scores) == {"pytorch", "onnx_fp32", "onnx_int8"} for scores in report["dev_f1"].values())
    assert report["dev_f1"]["jnlpba"]["onnx_fp32"] == pytest.approx(report["dev_f1"]["jnlpba"]["pytorch"], abs=1e-6)
    config = json.loads((joint_bundle / "config.json").read_text())
    # QDQ keeps the MatMuls' names: each head's projection is found as the joint graph's classifier
    classifier = node_groups(joint_bundle / "model.onnx", heads=["jnlpba", "species"])["classifier"]
    assert len(classifier) == 2 and all("/jnlpba/" in n or "/species/" in n for n in classifier)
    assert list(config["id2label"].values()) == [*serving["heads"][0]["labels"], *serving["heads"][1]["labels"]]


async def test_served_answer_has_both_heads(joint_bundle: Path) -> None:
    async with app_client(Settings(model_path=joint_bundle, max_text_chars=1000)) as (client, _):
        body = (await client.post("/ner", json={"text": TEXT})).json()
        model = (await client.get("/model")).json()
    found = {(e["text"], e["label"], e["source"]) for e in body["entities"]}
    assert ("cells", "Species", "species") in found
    assert {("p53 kinase", "protein", "jnlpba"), ("myc gene", "DNA", "jnlpba")} & found
    assert [h["name"] for h in model["heads"]] == ["jnlpba", "species"] and model["self_check"]["passed"] is True


def test_heads_from_several_corpora_and_from_one_type(tmp_path: Path) -> None:
    """One head fed by both corpora (scored per corpus as well), one head with a corpus's protein alone,
    and the epoch's steps fixed by --steps-per-epoch whatever the heads hold."""
    from train.cli import main

    base = make_base_model(tmp_path / "base")
    cells, species = make_corpus(tmp_path / "a"), make_species_corpus(tmp_path / "s")
    corpora = [f"both={cells},{species}", f"protein={cells}@protein"]
    flags = ["--base-model", str(base), "--output", str(tmp_path / "ckpt"), "--epochs", "2", "--batch-size", "4"]
    flags += ["--max-length", "24", "--stride", "6", "--dev-fraction", "0.25", "--steps-per-epoch", "5"]
    assert main(["train-joint", "--corpora", *corpora, *flags]) == 0
    records = [json.loads(line) for line in (tmp_path / "ckpt" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["heads"]["protein"]["labels"] == ["O", "B-protein", "I-protein"]
    assert records[0]["heads"]["both"]["labels"] == ["O", "B-DNA", "I-DNA", "B-Species", "I-Species", "B-protein", "I-protein"]
    assert [r["step"] for r in records[1:]] == [5, 10]
    by_source = records[-1]["dev_by_source"]
    assert set(by_source) == {"both"} and set(by_source["both"]) == {f"{tmp_path.name}/a", f"{tmp_path.name}/s"}
    supports = [report["micro"]["support"] for report in by_source["both"].values()]
    assert min(supports) > 0 and sum(supports) == records[-1]["dev"]["both"]["micro"]["support"]  # the merged dev is the two
