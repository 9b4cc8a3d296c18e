"""Checkpoint averaging: the mean of a run's kept epoch weights, scored on that run's dev split.

A run trained with ``--keep-epochs`` leaves every epoch's weights under ``epochs/``. Late epochs of
one run sit in one basin, so their mean is a single network of the same size that often scores
above each of them (Izmailov et al. 2018, "Averaging weights leads to wider optima"): an ensemble's
gain with none of its serving cost. The averaged checkpoint is written like a training run's best
epoch, so ``bioner export`` takes it unchanged, and it is scored by the same pipeline, on the same
dev documents, as the run's epochs were.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from service.bundle_format import read_serving
from train.config import EPOCHS_DIR, TrainConfig
from train.data import load_documents
from train.finetune import save_checkpoint, score_dev
from train.run_log import read_log
from train.task import prepare

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
    kept = read_epochs(run, epochs)
    serving = read_serving(run)
    saved = dict(serving.extra["train_config"])
    if saved.get("qat_epochs"):
        raise ValueError("a --qat-epochs run's int8 ranges do not average: average the fp32 run, then fine-tune the mean with --qat-epochs")
    # the network is rebuilt as the run built it; teachers and auxiliary corpora shaped only its training
    config = replace(TrainConfig(**saved), output=str(output), teacher=[], distill_text=[], aux_train=[])
    train_docs, dev_docs = load_documents(config)
    task = prepare(config, train_docs, dev_docs)
    for name, module in task.modules.items():
        module.load_state_dict(mean_weights([state[name] for state in kept]))
    transitions = task.tagger.crf.to_transitions() if task.tagger is not None else None
    report = score_dev(task, dev_docs, transitions)
    output.mkdir(parents=True, exist_ok=True)
    save_checkpoint(
        output,
        task,
        transitions,
        {"train_config": saved, "averaged_epochs": epochs, "averaged_from": str(run), "averaged_output": str(output)},
    )
    by_epoch = {r["epoch"]: r["dev"]["micro"]["f1"] for r in read_log(run) if r.get("epoch") in epochs}
    result = {"run": str(run), "epochs": epochs, "dev": report, "epochs_dev_f1": by_epoch, "config": asdict(config)}
    (output / REPORT_FILE).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result
