"""Checkpoint averaging: kept epoch weights, their mean, and the averaged checkpoint through export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("optimum")

from tiny_bert import export_bundle, make_base_model, make_corpus, tiny_train_config  # noqa: E402

from train.average import mean_weights  # noqa: E402
from train.cli import main  # noqa: E402
from train.finetune import train  # noqa: E402


def test_mean_of_floats_and_integer_buffers_kept() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "ids": torch.tensor([0, 1])}
    b = {"w": torch.tensor([3.0, 6.0]), "ids": torch.tensor([0, 1])}
    mean = mean_weights([a, b])
    assert torch.equal(mean["w"], torch.tensor([2.0, 4.0]))
    assert mean["ids"].dtype == torch.int64 and torch.equal(mean["ids"], a["ids"])
    with pytest.raises(ValueError, match="no weights"):
        mean_weights([])


@pytest.fixture(scope="module")
def crf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("average")
    base, corpus = make_base_model(root / "base"), make_corpus(root / "corpus")
    run = root / "run"
    train(tiny_train_config(base, corpus, run, epochs=3, head="crf", keep_epochs=True))
    return run


def dev_f1_by_epoch(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["epoch"]: r["dev"]["micro"]["f1"] for r in records if "dev" in r}


def test_one_epoch_averaged_is_that_epoch(crf_run: Path, tmp_path: Path) -> None:
    """The mean of one epoch is that epoch: rebuilt network, CRF and dev split all match the run's."""
    assert sorted(p.name for p in (crf_run / "epochs").iterdir()) == ["1.pt", "2.pt", "3.pt"]
    f1 = dev_f1_by_epoch(crf_run)
    for epoch in (1, 3):
        assert main(["average", "--run", str(crf_run), "--epochs", str(epoch), "--output", str(tmp_path / f"e{epoch}")]) == 0
        report = json.loads((tmp_path / f"e{epoch}" / "average.json").read_text(encoding="utf-8"))
        assert report["dev"]["micro"]["f1"] == pytest.approx(f1[epoch], abs=1e-9)
        assert report["epochs_dev_f1"] == {str(epoch): f1[epoch]}


def test_averaged_checkpoint_exports_with_its_crf(crf_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "avg"
    assert main(["average", "--run", str(crf_run), "--epochs", "2", "3", "--output", str(out)]) == 0
    from safetensors.torch import load_file

    from service.bundle_format import read_serving

    serving = read_serving(out)
    assert serving.default_decoding.value == "crf" and serving.extra["averaged_epochs"] == [2, 3]
    kept = [torch.load(crf_run / "epochs" / f"{e}.pt", weights_only=True) for e in (2, 3)]
    assert serving.transitions is not None
    start = (kept[0]["crf"]["start"] + kept[1]["crf"]["start"]) / 2
    assert torch.allclose(torch.from_numpy(serving.transitions.start).float(), start, atol=1e-6)
    weights = load_file(out / "model.safetensors")
    name = next(k for k in weights if k.endswith("classifier.weight"))
    assert torch.allclose(weights[name], (kept[0]["model"][name] + kept[1]["model"][name]) / 2, atol=1e-6)
    assert export_bundle(out, tmp_path / "bundle", "--quantize", "none") == 0
    card = (tmp_path / "bundle" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Weights: the mean of epochs 2, 3 (checkpoint averaging)" in card
    reproduce = card[card.index("## Reproduce") :]
    assert "--keep-epochs --train" in reproduce and "--keep-epochs True" not in reproduce  # a switch, written as one
    assert f"bioner average --run {crf_run} --epochs 2 3 --output {out}" in reproduce


def test_epochs_not_kept_are_a_clear_error(crf_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["average", "--run", str(crf_run), "--epochs", "3", "7", "--output", str(tmp_path / "x")]) == 2
    assert "kept no weights for epoch(s) [7] (kept: [1, 2, 3])" in capsys.readouterr().err
