"""``bioner train`` and ``pretrain`` flags are generated from their config dataclasses: the same names and
defaults as before generation, values parsed to the fields' types, help for every flag, no torch."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Optional, Union

import pytest

from train.cli import add_train_commands
from train.config import PretrainConfig, TrainConfig, split_seed_of
from train.flags import config_from_args, optional_of

# The flags as they were written by hand before generation (README and the model card's commands use them).
TRAIN_FLAGS = [
    "--train",
    "--dev",
    "--base-model",
    "--output",
    "--dev-fraction",
    "--epochs",
    "--batch-size",
    "--learning-rate",
    "--weight-decay",
    "--warmup-ratio",
    "--dropout",
    "--max-length",
    "--stride",
    "--window-align",
    "--label-policy",
    "--token-types",
    "--loss",
    "--ens-beta",
    "--head",
    "--crf-learning-rate",
    "--seed",
    "--dev-seed",
    "--threads",
    "--device",
    "--max-steps",
    "--tag-map",
    "--separator",
    "--join-sentences",
    "--train-fraction",
    "--folds",
    "--aux-train",
    "--aux-tag-map",
    "--aux-ratio",
    "--aux-epochs",
    "--teacher",
    "--distill-text",
    "--distill-alpha",
    "--distill-temperature",
    "--student-layers",
    "--qat-epochs",
    "--adversarial-epsilon",
    "--keep-epochs",
    "--resume",
]
PRETRAIN_FLAGS = [
    "--text",
    "--base-model",
    "--output",
    "--epochs",
    "--batch-size",
    "--learning-rate",
    "--max-length",
    "--mask-probability",
    "--held-out-fraction",
    "--exclude-dev-of",
    "--dev-fraction",
    "--dev-seed",
    "--dev-join-sentences",
    "--head-warmup-steps",
    "--head-learning-rate",
    "--add-vocab-from",
    "--separator",
    "--seed",
    "--threads",
    "--device",
    "--max-steps",
    "--resume",
]
REQUIRED = {
    "train": ["--train", "c", "--base-model", "b", "--output", "o"],
    "pretrain": ["--text", "c", "--base-model", "b", "--output", "o"],
}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    add_train_commands(sub)
    return dict(sub.choices)


def _parse(command: str, *extra: str) -> argparse.Namespace:
    return _subparsers()[command].parse_args([*REQUIRED[command], *extra])


@pytest.mark.parametrize(("command", "expected"), [("train", TRAIN_FLAGS), ("pretrain", PRETRAIN_FLAGS)])
def test_the_flags_are_the_hand_written_ones_and_all_say_what_they_do(command: str, expected: list[str]) -> None:
    actions = [a for a in _subparsers()[command]._actions if a.option_strings and a.dest != "help"]
    assert sorted(a.option_strings[0] for a in actions) == sorted(expected)
    assert all(a.help for a in actions)


def test_defaults_are_the_dataclass_defaults() -> None:
    assert config_from_args(TrainConfig, _parse("train")) == TrainConfig(train=["c"], output="o", base_model="b")
    assert config_from_args(PretrainConfig, _parse("pretrain")) == PretrainConfig(text=["c"], base_model="b", output="o")
    args = _parse("train")
    assert (args.folds, args.resume) == (0, False)


def test_values_become_the_field_types() -> None:
    args = _parse("train", "--epochs", "5", "--learning-rate", "1e-4", "--tag-map", "I-I-MISC=I-MISC,0=O", "--dev", "d1", "d2")
    config = config_from_args(TrainConfig, args)
    assert (config.epochs, config.learning_rate, config.dev) == (5, 1e-4, ["d1", "d2"])
    assert config.tag_map == {"I-I-MISC": "I-MISC", "0": "O"}
    assert config.keep_epochs is False  # a bool field is a switch: present or absent, never a value to mistype
    assert config_from_args(TrainConfig, _parse("train", "--keep-epochs")).keep_epochs is True
    with pytest.raises(SystemExit):
        _parse("train", "--keep-epochs", "False")
    assert config_from_args(TrainConfig, _parse("train", "--seed", "7")).split_seed == 7  # absent: derived from --seed
    seeded = config_from_args(TrainConfig, _parse("train", "--seed", "7", "--dev-seed", "13"))
    assert (seeded.seed, seeded.dev_seed, seeded.split_seed) == (7, 13, 13)
    with pytest.raises(SystemExit):
        _parse("train", "--dev-seed", "thirteen")  # an optional int is still an int
    with pytest.raises(ValueError, match="--dev files"):
        config_from_args(TrainConfig, _parse("train", "--dev", "d", "--dev-seed", "13"))  # nothing to carve: refused, not ignored


def test_optional_fields_take_the_flag_type_of_what_they_hold() -> None:
    assert optional_of(Optional[int]) is int and optional_of(int | None) is int  # noqa: UP045 (both spellings reach the parser)
    assert optional_of(Union[None, float]) is float  # noqa: UP007
    assert optional_of(list[str]) == list[str] and optional_of(int | str) == int | str  # not an optional: unchanged


def test_later_commands_find_the_seed_a_run_carved_its_dev_with() -> None:
    assert split_seed_of({"seed": 7}) == 7
    assert split_seed_of({"seed": 7, "dev_seed": 13}) == 13
    assert split_seed_of({"seed": 7, "dev_seed": None}) == 7  # a run saved without --dev-seed
    assert split_seed_of({}) == 13
    assert split_seed_of({"seed": 7, "dev_seed": 13}, chosen=5) == 5  # an explicit --seed wins
    with pytest.raises(SystemExit):
        _parse("train", "--head", "bilstm")  # choices come from the field
    with pytest.raises(ValueError, match="SOURCE=TARGET"):
        config_from_args(TrainConfig, _parse("train", "--tag-map", "nonsense"))


def test_a_bad_setting_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torch")
    from train.cli import main

    assert main(["train", *REQUIRED["train"], "--tag-map", "nonsense"]) == 2
    assert capsys.readouterr().err.startswith("bioner train: tag map rule 'nonsense'")


def test_building_the_parsers_imports_no_torch() -> None:
    code = (
        "import argparse, sys; from train.cli import add_train_commands; "
        "add_train_commands(argparse.ArgumentParser().add_subparsers()); "
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stdout + result.stderr
