"""Checkpoint averaging: the mean of a run's kept epoch weights, or of several runs' best weights.

A run trained with ``--keep-epochs`` leaves every epoch's weights under ``epochs/``. Late epochs of
one run sit in one basin, so their mean is a single network of the same size that often scores
above each of them (Izmailov et al. 2018, "Averaging weights leads to wider optima"): an ensemble's
gain with none of its serving cost. Runs fine-tuned from one pretrained encoder usually stay in one
basin too, so the mean of their best checkpoints (a uniform "model soup", Wortsman et al. 2022) is
the same bet across recipes and seeds. The averaged checkpoint is written like a training run's best
epoch, so ``bioner export`` takes it unchanged, and it is scored by the same pipeline, on the same
dev documents, as the runs were.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from transformers.utils import SAFE_WEIGHTS_NAME as WEIGHTS_FILE  # what save_pretrained writes

from service.bundle_format import SERVING_FILE, read_serving
from service.corpora import Document
from train.config import EPOCHS_DIR, TrainConfig
from train.data import load_documents
from train.finetune import save_checkpoint, score_dev
from train.qat import RANGES_FILE
from train.run_log import read_log
from train.task import Task, prepare

REPORT_FILE = "average.json"


def mean_weights(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of floating-point tensors; integer buffers (position ids) from the last state."""
    if not states:
        raise ValueError("no weights to average")
    mean: dict[str, torch.Tensor] = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            mean[key] = torch.stack([state[key].to(torch.float64) for state in states]).mean(0).to(last.dtype)
        else:
            mean[key] = last.clone()
    return mean


def rebuilt(saved: dict[str, Any], output: Path, **changes: Any) -> TrainConfig:
    """A run's settings to rebuild its network with: teachers and auxiliary corpora shaped only its training,
    and on the CPU whatever device it trained on, so that every averaged state meets on one device."""
    return replace(TrainConfig(**saved), output=str(output), teacher=[], distill_text=[], aux_train=[], device="cpu", **changes)


def save_mean(
    task: Task, states: list[dict[str, dict[str, torch.Tensor]]], dev_docs: list[Document], output: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    """Load the mean of ``states`` (by module name) into ``task``, write it to ``output`` as a checkpoint with
    ``extra`` in its serving.json, and return its dev report."""
    for name, module in task.modules.items():
        module.load_state_dict(mean_weights([state[name] for state in states]))
    transitions = task.tagger.crf.to_transitions() if task.tagger is not None else None
    report = score_dev(task, dev_docs, transitions)
    output.mkdir(parents=True, exist_ok=True)
    save_checkpoint(output, task, transitions, extra)
    return report


def read_epochs(run: Path, epochs: list[int]) -> list[dict[str, dict[str, torch.Tensor]]]:
    """The kept weights of these epochs, by module name; a clear error when one was not kept."""
    folder = run / EPOCHS_DIR
    missing = [e for e in epochs if not (folder / f"{e}.pt").exists()]
    if missing:
        kept = sorted(int(p.stem) for p in folder.glob("*.pt")) if folder.exists() else []
        raise ValueError(f"{run} kept no weights for epoch(s) {missing} (kept: {kept or 'none; train with --keep-epochs'})")
    return [torch.load(folder / f"{e}.pt", map_location="cpu", weights_only=True) for e in epochs]


def average(run: Path, epochs: list[int], output: Path) -> dict[str, Any]:
    """Write the averaged checkpoint to ``output``; returns its dev report beside each averaged epoch's."""
    if len(set(epochs)) != len(epochs):
        raise ValueError(f"epochs repeat: {epochs}")
    if output.resolve() == run.resolve():
        raise ValueError(f"--output {output} is the run itself: it would overwrite the run's best checkpoint")
    kept = read_epochs(run, epochs)
    serving = read_serving(run)
    saved = dict(serving.extra["train_config"])
    if saved.get("qat_epochs"):
        raise ValueError("a --qat-epochs run's int8 ranges do not average: average the fp32 run, then fine-tune the mean with --qat-epochs")
    config = rebuilt(saved, output)
    train_docs, dev_docs = load_documents(config)
    task = prepare(config, train_docs, dev_docs)
    extra = {"train_config": saved, "averaged_epochs": epochs, "averaged_from": str(run), "averaged_output": str(output)}
    report = save_mean(task, kept, dev_docs, output, extra)
    by_epoch = {r["epoch"]: r["dev"]["micro"]["f1"] for r in read_log(run) if r.get("epoch") in epochs}
    result = {"run": str(run), "epochs": epochs, "dev": report, "epochs_dev_f1": by_epoch, "config": asdict(config)}
    (output / REPORT_FILE).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def _trained_config(checkpoint: Path) -> dict[str, Any]:
    """The run's recorded settings; a clear refusal for what is not a fp32 `bioner train` checkpoint."""
    if not (checkpoint / SERVING_FILE).is_file():
        raise ValueError(f"{checkpoint}: no {SERVING_FILE} there (not a checkpoint folder, or a mistyped path)")
    if not (checkpoint / WEIGHTS_FILE).is_file():
        raise ValueError(f"{checkpoint} holds no PyTorch weights ({WEIGHTS_FILE}): an exported bundle does not average, its runs do")
    saved = read_serving(checkpoint).extra.get("train_config")
    if not isinstance(saved, dict):
        raise ValueError(f"{checkpoint} is not a `bioner train` checkpoint (its {SERVING_FILE} records no train_config)")
    if saved.get("qat_epochs") or (checkpoint / RANGES_FILE).exists():
        raise ValueError(f"{checkpoint} carries int8 ranges from a --qat-epochs run, which do not average: soup fp32 checkpoints")
    try:
        TrainConfig(**saved)
    except TypeError as exc:  # a train-joint run, or settings of another version
        raise ValueError(f"{checkpoint}'s train_config is not one `bioner train` reads ({exc})") from None
    return dict(saved)


def _best_dev_f1(checkpoint: Path) -> float | None:
    """The dev F1 the run recorded for the epoch it kept, to set the soup beside its members."""
    best = checkpoint / "best.json"
    return float(json.loads(best.read_text(encoding="utf-8"))["dev"]["micro"]["f1"]) if best.exists() else None


def _same_recipe_shape(checkpoints: list[Path], saved: list[dict[str, Any]]) -> None:
    """Refuse members that would be read differently: the soup keeps the first one's settings."""
    for key in ("label_policy", "head"):
        values = {str(c): s.get(key) for c, s in zip(checkpoints, saved, strict=True)}
        if len(set(map(str, values.values()))) > 1:
            raise ValueError(f"the checkpoints differ in {key} ({values}): one network cannot be read both ways")
    kinds = {str(c): read_serving(c).token_types.value for c in checkpoints}  # as served, a continued run's included
    if len(set(kinds.values())) > 1:
        raise ValueError(f"the checkpoints read different token types ({kinds}): one network cannot serve both")


def _same_network(checkpoints: list[Path], tasks: list[Task]) -> None:
    """Refuse a soup of networks that differ in a tensor's name or shape (another head or label set) or
    in vocabulary (another base of the same shape, whose rows mean other subwords)."""

    def shapes(task: Task) -> dict[str, dict[str, tuple[int, ...]]]:
        return {name: {k: tuple(v.shape) for k, v in module.state_dict().items()} for name, module in task.modules.items()}

    first, vocabulary = shapes(tasks[0]), tasks[0].tokenizer.get_vocab()
    for checkpoint, task in zip(checkpoints[1:], tasks[1:], strict=True):
        if shapes(task) != first:
            raise ValueError(f"{checkpoint} is not the same network as {checkpoints[0]} (tensor names or shapes differ)")
        if task.tokenizer.get_vocab() != vocabulary:
            raise ValueError(f"{checkpoint} reads another vocabulary than {checkpoints[0]}: fine-tuned from another base")


def soup(checkpoints: list[Path], output: Path) -> dict[str, Any]:
    """Write the mean of these runs' best weights to ``output``, scored on the dev documents they all share.

    The soup keeps the first checkpoint's settings (window, decoding, train_config), so list first the
    run whose recipe it should carry."""
    if len(checkpoints) < 2:
        raise ValueError("a soup needs at least two checkpoints")
    if len({c.resolve() for c in checkpoints}) != len(checkpoints):
        raise ValueError(f"checkpoints repeat: {[str(c) for c in checkpoints]}")
    if output.resolve() in {c.resolve() for c in checkpoints}:
        raise ValueError(f"--output {output} is one of the checkpoints: it would overwrite that run's weights")
    saved = [_trained_config(c) for c in checkpoints]
    _same_recipe_shape(checkpoints, saved)
    configs = [rebuilt(s, output, student_layers=0) for s in saved]  # a student's checkpoint already has its layers
    train_docs, dev_docs = load_documents(configs[0])
    for checkpoint, config in zip(checkpoints[1:], configs[1:], strict=True):
        if [d.text for d in load_documents(config)[1]] != [d.text for d in dev_docs]:
            raise ValueError(f"{checkpoint} was scored on other dev documents than {checkpoints[0]}: its dev F1 would not compare")
    # each checkpoint loads as a base would: its encoder, its classifier and (CRF) its transitions
    tasks = [prepare(replace(config, base_model=str(c)), train_docs, dev_docs) for c, config in zip(checkpoints, configs, strict=True)]
    _same_network(checkpoints, tasks)
    states = [{name: module.state_dict() for name, module in task.modules.items()} for task in tasks]
    souped = {"train_config": saved[0], "souped_from": [str(c) for c in checkpoints], "souped_output": str(output)}
    report = save_mean(tasks[0], states, dev_docs, output, souped)
    members = {str(c): _best_dev_f1(c) for c in checkpoints}
    result = {"checkpoints": [str(c) for c in checkpoints], "dev": report, "checkpoints_dev_f1": members}
    (output / REPORT_FILE).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result
