"""Resumable runs on a tiny BERT: paused after an epoch and resumed, fine-tuning and pretraining end
exactly where the uninterrupted run ends (weights, optimiser, generators, metrics, best epoch)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from tiny_bert import make_base_model, make_corpus, tiny_train_config  # noqa: E402

from train.config import PretrainConfig  # noqa: E402
from train.loop import TrainingLoop  # noqa: E402
from train.resume import STATE_FILE  # noqa: E402

# Keys whose values differ between two equal runs: wall-clock figures, the output folder, the log's byte length.
UNEQUAL = {"epoch_seconds", "train_tokens_per_second", "head_warmup_seconds", "adapt_seconds", "output", "log_size"}


def _assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Exact equality, tensors bitwise, ignoring the keys in UNEQUAL."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a.keys() - UNEQUAL:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def _state(folder: Path) -> dict[str, Any]:
    state: dict[str, Any] = torch.load(folder / STATE_FILE, weights_only=True)
    return state


def _metrics(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return make_base_model(root / "base"), make_corpus(root / "corpus")


@pytest.fixture
def keep_last_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Finished runs keep their last epoch's full state, so the final weights and optimiser can be compared."""
    monkeypatch.setattr(TrainingLoop, "finish", lambda self: None)


@pytest.mark.parametrize(
    ("overrides", "pauses"),
    [
        ({"epochs": 2, "aux_train": "corpus", "aux_epochs": 1}, [1, 2]),  # after the multi-task phase, then inside fine-tuning
        ({"epochs": 2, "head": "crf", "crf_learning_rate": 0.1}, [1]),  # the CRF transitions come back too
        ({"epochs": 3, "qat_epochs": 2}, [1, 2]),  # before the int8-aware epochs, then inside them (observed ranges)
        ({"epochs": 2, "head": "crf", "adversarial_epsilon": 1.0}, [1]),  # the attack's second pass draws dropout too
    ],
    ids=["multitask", "crf", "qat", "fgm"],
)
def test_finetune_paused_and_resumed_equals_the_uninterrupted_run(
    tiny: tuple[Path, Path], tmp_path: Path, keep_last_state: None, overrides: dict[str, Any], pauses: list[int]
) -> None:
    from train.finetune import train

    base, corpus = tiny
    if "aux_train" in overrides:
        overrides = {**overrides, "aux_train": [str(corpus)]}  # the main corpus doubles as the auxiliary one
    straight = train(tiny_train_config(base, corpus, tmp_path / "straight", **overrides))
    config = tiny_train_config(base, corpus, tmp_path / "parts", **overrides)
    for n, pause in enumerate(pauses):
        paused = train(config, resume=n > 0, stop_after=pause)
        assert [r["epoch"] for r in _metrics(tmp_path / "parts")[1:]] == list(range(1, pause + 1))
        assert not (tmp_path / "parts" / "best.json").exists() and paused.get("epoch", 0) <= pause  # none yet: no int8-aware epoch
    best = train(config, resume=True)

    _assert_same(_state(tmp_path / "parts"), _state(tmp_path / "straight"))  # weights, optimiser, scheduler, RNG, best
    _assert_same(_metrics(tmp_path / "parts"), _metrics(tmp_path / "straight"))
    _assert_same(best, straight)
    _assert_same(json.loads((tmp_path / "parts" / "best.json").read_text()), best)
    assert (tmp_path / "parts" / "model.safetensors").read_bytes() == (tmp_path / "straight" / "model.safetensors").read_bytes()


def test_a_finished_run_is_not_trained_again(tiny: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import train.finetune as finetune

    base, corpus = tiny
    config = tiny_train_config(base, corpus, tmp_path / "run", max_steps=2)
    best = finetune.train(config)
    log = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "modules" not in _state(tmp_path / "run")  # only the marker is left

    def no_training(*args: Any) -> None:
        raise AssertionError("a finished run was prepared again")

    monkeypatch.setattr(finetune, "prepare", no_training)
    assert finetune.train(config, resume=True) == best
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == log


def test_cli_resume_refuses_other_settings_then_continues(
    tiny: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from train.cli import main
    from train.finetune import train

    base, corpus = tiny
    config = tiny_train_config(base, corpus, tmp_path / "run", epochs=2)
    train(config, stop_after=1)
    argv = ["train", "--train", str(corpus), "--base-model", str(base), "--output", str(tmp_path / "run"), "--resume", "--epochs", "2"]
    argv += ["--batch-size", "4", "--max-length", "24", "--stride", "6", "--dev-fraction", "0.25", "--dropout", "0"]
    assert main([*argv, "--learning-rate", "1e-3"]) == 2
    assert "learning_rate 0.005 -> 0.001" in capsys.readouterr().err
    assert main([*argv, "--learning-rate", "5e-3"]) == 0
    assert [r["epoch"] for r in _metrics(tmp_path / "run")[1:]] == [1, 2]
    assert json.loads((tmp_path / "run" / "best.json").read_text())["epoch"] in (1, 2)


def test_pretrain_paused_and_resumed_equals_the_uninterrupted_run(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    from train.pretrain import pretrain

    base, corpus = tiny
    # 10 texts -> 20 windows of 16 tokens -> 5 batches an epoch: warm-up epochs of 5 and 1 steps, then 2 adaptation epochs
    config = PretrainConfig(
        text=[str(corpus)], base_model=str(base), output=str(tmp_path / "straight"), batch_size=4, max_length=16, epochs=2
    )
    config = replace(config, head_warmup_steps=6, held_out_fraction=0.2)
    straight = pretrain(config)
    parts = replace(config, output=str(tmp_path / "parts"))
    pretrain(parts, stop_after=1)  # inside the head warm-up: the encoder is frozen again on resume
    pretrain(parts, resume=True, stop_after=3)  # inside the adaptation
    record = pretrain(parts, resume=True)
    _assert_same(record, straight)
    assert (tmp_path / "parts" / "model.safetensors").read_bytes() == (tmp_path / "straight" / "model.safetensors").read_bytes()
    assert pretrain(parts, resume=True) == record  # finished: the record back, nothing trained


def test_a_run_saved_before_a_setting_existed_still_resumes(tmp_path: Path) -> None:
    """A state saved before ``window_align`` existed ran on token windows: it resumes as such, and only as such."""
    from train.resume import ResumeError, load_state, save_state

    save_state(tmp_path, {"config": {"epochs": 3}, "epoch": 1})
    assert load_state(tmp_path, {"epochs": 3, "window_align": "tokens"}) is not None
    assert load_state(tmp_path, {"epochs": 3, "dev_seed": None}) is not None  # carved with --seed, as every run before --dev-seed
    with pytest.raises(ResumeError, match="window_align 'tokens' -> 'sentences'"):
        load_state(tmp_path, {"epochs": 3, "window_align": "sentences"})
