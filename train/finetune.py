"""Fine-tune a Hugging Face encoder for token classification on character-span documents.

Every epoch is scored on dev through the service's own windowing and decoding (strict span F1),
and the best epoch's checkpoint is the one kept in ``output``, ready for ``bioner export``.

With ``aux_train`` (GERBERA-style multi-task learning) a first phase of ``aux_epochs`` trains the
shared encoder on the main corpus and an auxiliary (general-domain) corpus at once, one head per
corpus, batches mixed at ``aux_ratio``; a second phase fine-tunes on the main corpus alone. Only
the main head is ever saved, so the checkpoint exports like any other.

With ``qat_epochs`` the last epochs of fine-tuning run through simulated int8 (:mod:`train.qat`),
on the same optimiser and schedule; only those epochs compete for the kept checkpoint.

Runs in the shared loop (:mod:`train.loop`): ``resume=True`` continues a killed run in ``output``
after its last completed epoch, with the same result as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from service.bundle_format import ServingConfig, write_serving
from service.corpora import Document
from service.decoding.crf import Transitions
from service.decoding.pipeline import Pipeline
from train.adversarial import EmbeddingAttack
from train.backends import torch_runner
from train.batches import aux_batch_count
from train.config import EPOCHS_DIR, TrainConfig
from train.data import load_documents
from train.evaluate import evaluate_documents
from train.loop import EpochStats, Phase, TrainingLoop, adamw, decay_groups
from train.qat import RANGES_FILE
from train.resume import save_atomically
from train.seeding import seed_everything
from train.task import Item, Task, prepare

__all__ = ["TrainConfig", "train"]


def phases(config: TrainConfig, task: Task, rng: np.random.Generator) -> list[Phase[Item]]:
    """The multi-task phase when there is an auxiliary corpus, then fine-tuning on the main corpus alone,
    its last ``qat_epochs`` a phase of their own (simulated int8) on the same optimiser and schedule."""
    steps_per_epoch = task.batches_per_epoch(config.batch_size)
    found: list[Phase[Item]] = []
    if task.aux_head is not None:
        joint_steps = (steps_per_epoch + aux_batch_count(steps_per_epoch, config.aux_ratio)) * config.aux_epochs
        groups = decay_groups([task.model, task.aux_head], config.weight_decay)
        optimizer, scheduler = adamw(groups, config.learning_rate, config.max_steps or joint_steps, config.warmup_ratio)
        params = [*task.model.parameters(), *task.aux_head.parameters()]
        plan = partial(task.mixed_plan, config.batch_size, config.aux_ratio, rng)
        found.append(Phase("multitask", config.aux_epochs, optimizer, scheduler, params, plan, task.step, config.max_steps))
    groups = decay_groups([task.model], config.weight_decay)
    if task.tagger is not None:  # transitions start at zero: they need a far larger step than the encoder
        groups.append({"params": list(task.tagger.crf.parameters()), "weight_decay": 0.0, "lr": config.crf_learning_rate})
    optimizer, scheduler = adamw(groups, config.learning_rate, config.max_steps or steps_per_epoch * config.epochs, config.warmup_ratio)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    plan = partial(task.main_plan, config.batch_size, rng)
    attack = EmbeddingAttack(task.model.get_input_embeddings(), config.adversarial_epsilon) if config.adversarial_epsilon else None
    fp32_epochs = config.epochs - config.qat_epochs
    if fp32_epochs:
        found.append(Phase("finetune", fp32_epochs, optimizer, scheduler, params, plan, task.step, config.max_steps, adversary=attack))
    if task.quant_sim is not None:  # the same optimiser and schedule go on, through simulated int8
        switch_on = task.quant_sim.enable
        found.append(
            Phase("finetune-qat", config.qat_epochs, optimizer, scheduler, params, plan, task.step, config.max_steps, switch_on, attack)
        )
    return found


def _tensorboard(out: Path) -> Any:
    """A SummaryWriter when TensorBoard is installed; the JSON Lines log is always written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


def score_dev(task: Task, dev_docs: list[Document], transitions: Transitions | None) -> dict[str, Any]:
    """Strict span P/R/F1 on dev, decoded by the service's own pipeline as the exported model will be
    (in simulated int8 during QAT epochs, with the ranges held still)."""
    pipeline = Pipeline(task.encoder, task.scheme, task.window, task.strategy, task.decoding, transitions)
    with task.quant_sim.frozen() if task.quant_sim is not None else contextlib.nullcontext():
        return evaluate_documents(dev_docs, pipeline, torch_runner(task.model))


def save_checkpoint(out: Path, task: Task, transitions: Transitions | None, extra: dict[str, Any]) -> None:
    """The checkpoint ``bioner export`` reads: weights, tokenizer and serving.json with the run's
    settings, and after a QAT epoch the ranges it trained with."""
    task.model.save_pretrained(out)
    task.tokenizer.save_pretrained(out)
    serving = ServingConfig(task.window, task.strategy, task.decoding, transitions, extra=extra, token_types=task.encoder.token_types)
    write_serving(out, serving)
    if task.quant_sim is not None and task.quant_sim.enabled:
        task.quant_sim.save(out)
    else:
        (out / RANGES_FILE).unlink(missing_ok=True)  # an earlier run's ranges do not belong to these weights


class KeepBest:
    """End of an epoch: dev scores, one metrics.jsonl line, and the checkpoint when dev F1 is the best yet."""

    def __init__(self, config: TrainConfig, task: Task, dev_docs: list[Document], loop: TrainingLoop) -> None:
        self.config, self.task, self.dev_docs, self.loop = config, task, dev_docs, loop
        self.out = Path(config.output)
        self.board = _tensorboard(self.out)
        loop.extra.setdefault("best", {"dev": {"micro": {"f1": -1.0}}})

    def __call__(self, stats: EpochStats) -> None:
        transitions = self.task.tagger.crf.to_transitions() if self.task.tagger is not None else None
        report = self.score(transitions)
        record = {
            "epoch": stats.epoch,
            "phase": stats.phase,
            "step": stats.step,
            "train_loss": stats.loss,
            "epoch_seconds": stats.seconds,
            "train_tokens_per_second": stats.tokens / stats.seconds,
            "dev": report,
        }
        self.loop.log(record)
        self.plot(record)
        if self.config.keep_epochs:
            self.keep_weights(stats.epoch)
        micro = report["micro"]
        print(
            f"{stats.phase} epoch {stats.epoch}: loss {stats.loss:.4f}, dev P {micro['precision']:.4f} "
            f"R {micro['recall']:.4f} F1 {micro['f1']:.4f} ({stats.seconds:.0f} s)"
        )
        # With --qat-epochs only the int8-aware epochs compete: an fp32 epoch's score says little of its int8 graph.
        eligible = self.task.quant_sim is None or self.task.quant_sim.enabled
        if eligible and micro["f1"] > self.loop.extra["best"]["dev"]["micro"]["f1"]:
            self.loop.extra["best"] = record
            self.save(stats.epoch, transitions)

    def score(self, transitions: Transitions | None) -> dict[str, Any]:
        return score_dev(self.task, self.dev_docs, transitions)

    def save(self, epoch: int, transitions: Transitions | None) -> None:
        save_checkpoint(self.out, self.task, transitions, {"train_config": asdict(self.config), "best_epoch": epoch})

    def keep_weights(self, epoch: int) -> None:
        """This epoch's trained weights (every module: encoder, head, CRF), which averaging reads back."""
        folder = self.out / EPOCHS_DIR
        folder.mkdir(exist_ok=True)
        save_atomically({name: module.state_dict() for name, module in self.task.modules.items()}, folder / f"{epoch}.pt")

    def plot(self, record: dict[str, Any]) -> None:
        if self.board is None:
            return
        epoch, report = record["epoch"], record["dev"]
        self.board.add_scalar("train/loss", record["train_loss"], epoch)
        self.board.add_scalar("dev/f1", report["micro"]["f1"], epoch)
        for kind, prf in report["per_type"].items():
            self.board.add_scalar(f"dev/f1_{kind}", prf["f1"], epoch)


def train(
    config: TrainConfig, docs: tuple[list[Document], list[Document]] | None = None, *, resume: bool = False, stop_after: int = 0
) -> dict[str, Any]:
    """Run the fine-tune; returns the best epoch's record. Writes a checkpoint to ``output``.

    ``docs`` (train, dev) replaces reading ``config.train``/``config.dev`` (k-fold runs). ``resume``
    continues the run in ``output``; ``stop_after`` pauses it after that many epochs (resumable).
    """
    seed_everything(config.seed, config.threads)
    out = Path(config.output)
    loop = TrainingLoop(out, asdict(config), resume=resume, stop_after=stop_after)
    if loop.finished:
        print(f"{out} is a finished run: nothing to resume")
        return dict(loop.extra["best"])
    train_docs, dev_docs = docs if docs is not None else load_documents(config)
    task = prepare(config, train_docs, dev_docs)
    rng = np.random.default_rng(config.seed)
    loop.track(task.modules, rng)
    if not loop.resumed:
        loop.log(task.header)
    keep_best = KeepBest(config, task, dev_docs, loop)
    for phase in phases(config, task, rng):
        loop.run(phase, keep_best)
    best: dict[str, Any] = loop.extra["best"]
    if not loop.paused and "epoch" not in best:  # only int8-aware epochs compete, and none ran
        raise ValueError(f"no epoch of {out} ran in simulated int8 (--max-steps ended it first): no checkpoint to keep")
    if not loop.paused:
        (out / "best.json").write_text(json.dumps(best, indent=2), encoding="utf-8")
        loop.finish()
    return best
