"""The one optimiser and epoch loop behind fine-tuning and pretraining, resumable at every epoch end.

A run is a list of phases (multi-task then fine-tune; head warm-up then adaptation), each with its
own optimiser and schedule or sharing the one before's (fine-tuning, then its int8-aware epochs);
epochs and steps are counted over the whole run. A step is: loss, backward (and, with an adversary,
a second loss and backward, :mod:`train.adversarial`), gradient norm clipped to 1, optimiser,
scheduler. At each epoch end the caller's callback runs (dev scores, best checkpoint), then the
resume state is saved, so a state never names an epoch whose callback did not finish.

Resuming restores the weights, the optimiser and scheduler of the phase in progress, every random
generator, the counters, the caller's values in ``extra`` (best-so-far) and metrics.jsonl's length
(lines of a half-finished epoch are cut); finished phases are skipped. With the generators back, a
resumed CPU run repeats the uninterrupted one bit for bit. One gap is left: a kill after a new best
epoch's checkpoint is written and before its state is leaves that epoch's weights as "best"; the
resumed run repeats the epoch and, being the same computation, writes the same weights again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from train.resume import STATE_FILE, load_state, save_state
from train.run_log import LOG_FILE, append_record
from train.seeding import restore_rng_state, rng_state

Batch = TypeVar("Batch")
NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")


def decay_groups(modules: Sequence[torch.nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    """Parameter groups with weight decay on weights only: pulling biases and norm gains to 0 only hurts."""
    named = [(n, p) for m in modules for n, p in m.named_parameters()]
    return [
        {"params": [p for n, p in named if not any(k in n for k in NO_DECAY)], "weight_decay": weight_decay},
        {"params": [p for n, p in named if any(k in n for k in NO_DECAY)], "weight_decay": 0.0},
    ]


def adamw(
    groups: list[dict[str, Any]], learning_rate: float, total_steps: int, warmup_ratio: float
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW with linear warm-up over ``warmup_ratio`` of the steps, then linear decay to 0 at ``total_steps``."""
    optimizer = torch.optim.AdamW(groups, lr=learning_rate)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(total_steps * warmup_ratio), total_steps)


@dataclass
class Phase(Generic[Batch]):
    """A stretch of training under one optimiser: ``epochs`` passes over freshly drawn batches."""

    name: str  # unique within a run: the resume state names the phase in progress
    epochs: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    params: list[torch.nn.Parameter]  # what the gradient norm is clipped over
    plan: Callable[[], Sequence[Batch]]  # one epoch's batches, drawn as the epoch starts (from the run's generator)
    step: Callable[[Batch], tuple[torch.Tensor, int]]  # one batch -> its loss and its number of tokens
    max_steps: int = 0  # the run's step count at which the phase stops (0: all its epochs)
    before_epoch: Callable[[], None] | None = None  # e.g. switch on simulated int8 (resumed runs too)
    adversary: Callable[[Callable[[], torch.Tensor]], object] | None = None  # e.g. FGM: a second loss after each backward


@dataclass(frozen=True)
class EpochStats:
    phase: str
    epoch: int  # over the whole run, from 1
    step: int  # optimiser steps so far, over the whole run
    loss: float  # mean training loss over the epoch's batches
    seconds: float
    tokens: int


class TrainingLoop:
    """Runs phases in order in ``folder``; ``stop_after`` epochs pauses the run, resumable as if killed there."""

    def __init__(self, folder: Path, config: dict[str, Any], *, resume: bool = False, stop_after: int = 0) -> None:
        self.folder, self.config, self.stop_after = folder, config, stop_after
        folder.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / LOG_FILE
        self.saved = load_state(folder, config) if resume else None
        if resume and self.saved is None:
            print(f"nothing to resume in {folder}: starting afresh")
        elif not resume and (folder / STATE_FILE).exists():
            print(f"{folder} holds an earlier run's resume state: starting afresh over it (--resume would continue it)")
        self.extra: dict[str, Any] = dict(self.saved["extra"]) if self.saved else {}
        self.finished = bool(self.saved and self.saved["finished"])
        self.paused = False
        self.epoch = self.step = 0
        self.done: list[str] = []
        self.modules: dict[str, torch.nn.Module] = {}
        self.rng = np.random.default_rng()  # the run's own generator comes with track()

    @property
    def resumed(self) -> bool:
        return self.saved is not None

    def track(self, modules: dict[str, torch.nn.Module], rng: np.random.Generator) -> None:
        """What the run trains and draws from; a resumed run gets its weights, generators, counters and log back."""
        self.modules, self.rng = modules, rng
        if self.saved is None:
            return
        for name, module in modules.items():
            module.load_state_dict(self.saved["modules"][name])
        restore_rng_state(self.saved["rng"], rng)
        self.epoch, self.step, self.done = self.saved["epoch"], self.saved["step"], list(self.saved["done"])
        if self.log_path.exists():
            with self.log_path.open("r+b") as fh:
                fh.truncate(self.saved["log_size"])
        print(f"resuming {self.folder} after epoch {self.epoch} (step {self.step})")

    def log(self, record: dict[str, Any]) -> None:
        """One line of metrics.jsonl."""
        append_record(self.folder, record)

    def run(self, phase: Phase[Any], on_epoch_end: Callable[[EpochStats], None]) -> None:
        """The epochs of ``phase`` not yet done; none once the run is paused or at the phase's ``max_steps``."""
        if phase.name in self.done:
            return
        start = 0
        if self.saved is not None and self.saved["phase"] == phase.name:
            start = self.saved["phase_epoch"]
            phase.optimizer.load_state_dict(self.saved["optimizer"])
            phase.scheduler.load_state_dict(self.saved["scheduler"])
        for phase_epoch in range(start + 1, phase.epochs + 1):
            if self.paused or (phase.max_steps and self.step >= phase.max_steps):
                break
            if phase.before_epoch is not None:
                phase.before_epoch()
            on_epoch_end(self._epoch(phase))
            self._save(phase, phase_epoch)
            self.paused = bool(self.stop_after) and self.epoch >= self.stop_after
        if not self.paused:
            self.done.append(phase.name)

    def finish(self) -> None:
        """The run is complete: only a marker with its settings and ``extra`` stays."""
        save_state(self.folder, {"config": self.config, "finished": True, "extra": self.extra})

    def _epoch(self, phase: Phase[Any]) -> EpochStats:
        self.epoch += 1
        for module in self.modules.values():
            module.train()
        started, tokens, loss_sum, n = time.perf_counter(), 0, 0.0, 0
        bar = tqdm(phase.plan(), desc=f"{phase.name} epoch {self.epoch}", unit="batch", mininterval=5)
        for n, batch in enumerate(bar, 1):
            loss, batch_tokens = phase.step(batch)
            loss.backward()
            if phase.adversary is not None:
                phase.adversary(lambda: phase.step(batch)[0])  # noqa: B023 (called at once, inside this iteration)
            torch.nn.utils.clip_grad_norm_(phase.params, 1.0)
            phase.optimizer.step()
            phase.scheduler.step()
            phase.optimizer.zero_grad(set_to_none=True)
            tokens += batch_tokens
            loss_sum += float(loss.detach())
            self.step += 1
            bar.set_postfix(loss=f"{loss_sum / n:.4f}", tok_s=f"{tokens / (time.perf_counter() - started):.0f}", refresh=False)
            if phase.max_steps and self.step >= phase.max_steps:
                break
        bar.close()
        return EpochStats(phase.name, self.epoch, self.step, loss_sum / max(n, 1), time.perf_counter() - started, tokens)

    def _save(self, phase: Phase[Any], phase_epoch: int) -> None:
        state = {
            "config": self.config,
            "finished": False,
            "extra": self.extra,
            "done": self.done,
            "phase": phase.name,
            "phase_epoch": phase_epoch,
            "epoch": self.epoch,
            "step": self.step,
            "modules": {name: module.state_dict() for name, module in self.modules.items()},
            "optimizer": phase.optimizer.state_dict(),
            "scheduler": phase.scheduler.state_dict(),
            "rng": rng_state(self.rng),
            "log_size": self.log_path.stat().st_size if self.log_path.exists() else 0,
        }
        save_state(self.folder, state)
