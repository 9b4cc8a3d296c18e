"""Checkpoint averaging: kept epoch weights, their mean, and the averaged checkpoint through export;
the same for several runs' best weights (a model soup)."""

from __future__ import annotations

import json
import shutil
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
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("average")
    make_base_model(root / "base"), make_corpus(root / "corpus")
    return root


@pytest.fixture(scope="module")
def crf_run(root: Path) -> Path:
    run = root / "run"
    train(tiny_train_config(root / "base", root / "corpus", run, epochs=3, head="crf", keep_epochs=True))
    return run


@pytest.fixture(scope="module")
def crf_run_seed7(root: Path) -> Path:
    """The same recipe under another seed, on seed 13's dev documents: a second member for a soup."""
    run = root / "run-seed7"
    train(tiny_train_config(root / "base", root / "corpus", run, epochs=2, head="crf", seed=7, dev_seed=13))
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


def test_soup_of_a_run_and_its_copy_is_that_run(crf_run: Path, tmp_path: Path) -> None:
    """The mean of two equal networks is that network: rebuilt from each checkpoint, CRF included."""
    copy = tmp_path / "copy"
    shutil.copytree(crf_run, copy, ignore=shutil.ignore_patterns("epochs"))
    assert main(["average", "--checkpoints", str(crf_run), str(copy), "--output", str(tmp_path / "soup")]) == 0
    report = json.loads((tmp_path / "soup" / "average.json").read_text(encoding="utf-8"))
    best = json.loads((crf_run / "best.json").read_text(encoding="utf-8"))["dev"]["micro"]["f1"]
    assert report["dev"]["micro"]["f1"] == pytest.approx(best, abs=1e-9)
    assert report["checkpoints_dev_f1"] == {str(crf_run): best, str(copy): best}


def test_soup_of_two_seeds_is_their_mean_and_exports(crf_run: Path, crf_run_seed7: Path, tmp_path: Path) -> None:
    out = tmp_path / "soup"
    assert main(["average", "--checkpoints", str(crf_run), str(crf_run_seed7), "--output", str(out)]) == 0
    from safetensors.torch import load_file

    from service.bundle_format import read_serving

    members = [load_file(run / "model.safetensors") for run in (crf_run, crf_run_seed7)]
    weights = load_file(out / "model.safetensors")
    name = next(k for k in weights if k.endswith("classifier.weight"))
    assert not torch.allclose(members[0][name], members[1][name])  # two different networks were averaged
    assert torch.allclose(weights[name], (members[0][name] + members[1][name]) / 2, atol=1e-6)
    starts = [read_serving(run).transitions for run in (crf_run, crf_run_seed7)]
    serving = read_serving(out)
    assert serving.transitions is not None and all(t is not None for t in starts)
    assert torch.allclose(
        torch.from_numpy(serving.transitions.start),
        torch.from_numpy((starts[0].start + starts[1].start) / 2),
        atol=1e-6,  # type: ignore[union-attr]
    )
    assert serving.extra["souped_from"] == [str(crf_run), str(crf_run_seed7)]
    assert export_bundle(out, tmp_path / "bundle", "--quantize", "none") == 0
    card = (tmp_path / "bundle" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "Weights: the mean of 2 runs' best weights (a uniform model soup" in card
    assert f"bioner average --checkpoints {crf_run} {crf_run_seed7} --output {out}" in card


def test_soup_of_students_and_of_other_windows_keeps_the_first_runs_settings(root: Path, tmp_path: Path) -> None:
    """Members trained as 1-layer students load with their layers (not shrunk again), and a member
    trained on other windows is read with the first member's: the soup's serving.json and its
    train_config agree."""
    first, second = tmp_path / "s13", tmp_path / "s7"
    train(tiny_train_config(root / "base", root / "corpus", first, head="crf", student_layers=1))
    train(tiny_train_config(root / "base", root / "corpus", second, head="crf", student_layers=1, seed=7, dev_seed=13, max_length=20))
    out = tmp_path / "soup"
    assert main(["average", "--checkpoints", str(first), str(second), "--output", str(out)]) == 0
    from transformers import AutoConfig

    from service.bundle_format import read_serving

    assert AutoConfig.from_pretrained(out).num_hidden_layers == 1
    serving = read_serving(out)
    assert serving.window.max_length == 24 == serving.extra["train_config"]["max_length"]


def test_soup_refuses_what_would_not_compare(root: Path, crf_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(name: str, base: Path | None = None, **overrides: object) -> Path:
        train(tiny_train_config(base or root / "base", root / "corpus", tmp_path / name, **overrides))
        return tmp_path / name

    other_dev, linear, linear_all = run("other-dev", head="crf", seed=7), run("linear"), run("linear-all", label_policy="all")
    cased, student = run("cased", head="crf", token_types="case"), run("student", head="crf", student_layers=1)
    # a base of the same shape whose vocabulary lists the same words in another order
    words = (root / "base" / "vocab.txt").read_text(encoding="utf-8").split()
    shuffled = tmp_path / "shuffled-base"
    make_base_model(shuffled)
    (shuffled / "vocab.txt").write_text("\n".join(reversed(words)) + "\n", encoding="utf-8")
    from transformers import BertTokenizerFast

    (shuffled / "tokenizer.json").unlink()
    BertTokenizerFast(vocab_file=str(shuffled / "vocab.txt")).save_pretrained(shuffled)
    other_vocabulary = run("other-vocabulary", base=shuffled, head="crf")
    qat_like, bundle_like = tmp_path / "qat-like", tmp_path / "bundle-like"
    for copy in (qat_like, bundle_like):
        shutil.copytree(crf_run, copy, ignore=shutil.ignore_patterns("epochs"))
    from train.qat import RANGES_FILE

    (qat_like / RANGES_FILE).write_text("{}", encoding="utf-8")
    (bundle_like / "model.safetensors").unlink()
    cases = [
        (["--checkpoints", str(crf_run), str(other_dev)], "was scored on other dev documents"),
        (["--checkpoints", str(crf_run), str(linear)], "differ in head"),
        (["--checkpoints", str(linear), str(linear_all)], "differ in label_policy"),
        (["--checkpoints", str(crf_run), str(cased)], "read different token types"),
        (["--checkpoints", str(crf_run), str(student)], "is not the same network"),
        (["--checkpoints", str(crf_run), str(other_vocabulary)], "reads another vocabulary"),
        (["--checkpoints", str(crf_run), str(qat_like)], "carries int8 ranges"),
        (["--checkpoints", str(crf_run), str(bundle_like)], "holds no PyTorch weights"),
        (["--checkpoints", str(crf_run), str(tmp_path / "nowhere")], "no serving.json there"),
        (["--checkpoints", str(crf_run)], "at least two checkpoints"),
        (["--checkpoints", str(crf_run), str(crf_run)], "checkpoints repeat"),
        (["--checkpoints", str(crf_run), str(linear), "--epochs", "1"], "--epochs goes with --run, not with --checkpoints"),
        (["--run", str(crf_run)], "--run needs --epochs"),
    ]
    for args, message in cases:
        assert main(["average", *args, "--output", str(tmp_path / "x")]) == 2, args
        assert message in capsys.readouterr().err, args
    for args in (["--checkpoints", str(crf_run), str(qat_like)], ["--run", str(crf_run), "--epochs", "1"]):
        assert main(["average", *args, "--output", str(crf_run)]) == 2
        assert "would overwrite" in capsys.readouterr().err
