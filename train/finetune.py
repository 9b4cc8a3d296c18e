"""Fine-tune a Hugging Face encoder for token classification on character-span documents.

Defaults follow the published SciBERT-on-JNLPBA recipe (window 128, batch 32, AdamW 5e-5, linear
decay after 10% warmup, classifier dropout 0.3); the best epoch by dev strict span F1 is kept.

With ``aux_train`` (GERBERA-style multi-task learning) a first phase of ``aux_epochs`` trains the
shared encoder on the main corpus and an auxiliary (general-domain) corpus at once, one head per
corpus, batches mixed at ``aux_ratio``; a second phase fine-tunes on the main corpus alone. Only
the main head is ever saved, so the checkpoint exports like any other.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForTokenClassification, AutoTokenizer, get_linear_schedule_with_warmup

from service.bundle_format import ServingConfig, write_serving
from service.corpora import Document, read_corpus
from service.corpora.load import split_dev
from service.decoding.aggregate import Decoding, Strategy
from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Pipeline
from service.decoding.windows import TextEncoder, WindowConfig
from train.align import IGNORE, Feature, LabelPolicy, build_features, label_list
from train.backends import torch_runner
from train.crf import CrfTagger, invalid_moves
from train.evaluate import evaluate_documents
from train.losses import class_weights, label_counts
from train.seeding import seed_everything

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    train: list[str]
    output: str
    base_model: str
    dev: list[str] = field(default_factory=list)
    dev_fraction: float = 0.1
    epochs: int = 3
    batch_size: int = 32
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    dropout: float = 0.3
    max_length: int = 128
    stride: int = 32
    label_policy: str = "first"
    loss: str = "ce"  # ce | welt | ens
    ens_beta: float = 0.99
    head: str = "linear"  # linear | crf
    crf_learning_rate: float = 1e-2
    seed: int = 13
    threads: int = 0
    max_steps: int = 0  # stop early (tests and smoke runs); 0 = full epochs
    tag_map: dict[str, str] = field(default_factory=dict)
    separator: str = " "
    train_fraction: float = 1.0  # keep this share of the training documents (seeded), e.g. low-resource runs
    aux_train: list[str] = field(default_factory=list)  # general-domain corpus for multi-task learning
    aux_tag_map: dict[str, str] = field(default_factory=dict)
    aux_ratio: float = 0.5  # share of multi-task batches drawn from the auxiliary corpus
    aux_epochs: int = 1  # multi-task epochs before the main-corpus fine-tune

    def __post_init__(self) -> None:
        if self.head not in ("linear", "crf"):
            raise ValueError(f"head must be 'linear' or 'crf', not {self.head!r}")
        if self.head == "crf" and self.loss != "ce":
            raise ValueError("--head crf trains on the CRF's own sequence likelihood; class weights (--loss welt|ens) do not apply")
        if self.head == "crf" and self.label_policy != "first":
            raise ValueError("--head crf scores word sequences: it needs --label-policy first")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train fraction must be in (0, 1], not {self.train_fraction}")
        if self.aux_train and not 0.0 < self.aux_ratio < 1.0:
            raise ValueError(f"aux ratio must be in (0, 1), not {self.aux_ratio}")
        if self.aux_train and self.head == "crf":
            raise ValueError("multi-task training (--aux-train) is implemented for the linear head only")


def length_grouped_batches(features: list[Feature], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffle, sort by length inside mega-chunks, batch, shuffle batches: little padding, still random."""
    order = rng.permutation(len(features))
    mega = batch_size * 50
    batches: list[list[int]] = []
    for lo in range(0, len(order), mega):
        chunk = sorted(order[lo : lo + mega], key=lambda i: len(features[i].input_ids), reverse=True)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def token_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy over trained subwords, class-weighted when ``weight`` is given."""
    if weight is None:
        return model(**batch).loss
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    flat = logits.view(-1, logits.shape[-1])
    return torch.nn.functional.cross_entropy(flat, batch["labels"].view(-1), weight=weight, ignore_index=IGNORE)


def pad_labelled(rows: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad ``(input_ids, labels)`` rows into one batch; padding is masked and never trained."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for r, (row_ids, row_labels) in enumerate(rows):
        ids[r, : len(row_ids)] = torch.from_numpy(row_ids)
        mask[r, : len(row_ids)] = 1
        labels[r, : len(row_ids)] = torch.from_numpy(row_labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate(features: list[Feature], indices: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    return pad_labelled([(features[i].input_ids, features[i].labels) for i in indices], pad_id)


def subsample(docs: list[Document], fraction: float, seed: int) -> list[Document]:
    """A seeded share of the documents, in their original order."""
    if fraction >= 1.0:
        return docs
    keep = set(random.Random(seed + 1).sample(range(len(docs)), max(1, int(round(len(docs) * fraction)))))
    return [d for i, d in enumerate(docs) if i in keep]


def load_documents(config: TrainConfig) -> tuple[list[Document], list[Document]]:
    train_docs = [d for p in config.train for d in read_corpus(p, config.tag_map, config.separator)]
    if config.dev:
        dev_docs = [d for p in config.dev for d in read_corpus(p, config.tag_map, config.separator)]
    else:
        train_docs, dev_docs = split_dev(train_docs, config.dev_fraction, config.seed)
    return subsample(train_docs, config.train_fraction, config.seed), dev_docs


def _tensorboard(out: Path) -> Any:
    """A SummaryWriter when TensorBoard is installed; the JSON Lines log is always written."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out / "tensorboard"))


class AuxHead(torch.nn.Module):
    """The auxiliary corpus's classifier over the shared encoder's last hidden states."""

    def __init__(self, hidden_size: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(hidden_size, n_labels)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        encoder: Any = model.base_model  # the shared encoder under any token-classification head
        hidden = encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = self.classifier(self.dropout(hidden))
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), batch["labels"].view(-1), ignore_index=IGNORE)


def optimizer_for(
    modules: list[torch.nn.Module], config: TrainConfig, total_steps: int, extra_groups: list[dict[str, Any]] | None = None
) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW without decay on biases and norms, linear schedule with warmup."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm", "norm.weight")
    named = [(n, p) for m in modules for n, p in m.named_parameters()]
    groups = [
        {"params": [p for n, p in named if not any(k in n for k in no_decay)], "weight_decay": config.weight_decay},
        {"params": [p for n, p in named if any(k in n for k in no_decay)], "weight_decay": 0.0},
        *(extra_groups or []),
    ]
    optimizer = torch.optim.AdamW(groups, lr=config.learning_rate)
    return optimizer, get_linear_schedule_with_warmup(optimizer, int(total_steps * config.warmup_ratio), total_steps)


def aux_batch_count(n_main: int, ratio: float) -> int:
    """Auxiliary batches beside ``n_main`` main ones for the auxiliary share of an epoch to be ``ratio``."""
    return int(round(n_main * ratio / (1.0 - ratio)))


def mixed_batches(main: list[list[int]], aux: list[list[int]], ratio: float, rng: np.random.Generator) -> list[tuple[str, list[int]]]:
    """Every main batch once, plus auxiliary batches so that they make up ``ratio`` of the epoch."""
    n_aux = aux_batch_count(len(main), ratio)
    picked = [aux[i % len(aux)] for i in range(n_aux)] if aux else []
    items = [("main", b) for b in main] + [("aux", b) for b in picked]
    order = rng.permutation(len(items))
    return [items[i] for i in order]


def train(config: TrainConfig, docs: tuple[list[Document], list[Document]] | None = None) -> dict[str, Any]:
    """Run the fine-tune; returns the best epoch's record. Writes a checkpoint to ``output``.

    ``docs`` (train, dev) replaces reading ``config.train``/``config.dev`` (k-fold runs).
    """
    seed_everything(config.seed, config.threads)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)

    train_docs, dev_docs = docs if docs is not None else load_documents(config)
    labels = label_list(train_docs + dev_docs)
    label2id = {label: i for i, label in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(config.base_model, use_fast=True)
    encoder = TextEncoder(tokenizer.backend_tokenizer)
    window = WindowConfig(config.max_length, config.stride)
    policy = LabelPolicy(config.label_policy)
    features, stats = build_features(train_docs, encoder, label2id, window, policy)
    print(
        f"{len(train_docs)} train / {len(dev_docs)} dev documents, {len(features)} windows, "
        f"{stats.misaligned_spans} entity boundaries inside a word"
    )

    counts = label_counts([f.labels for f in features], len(labels))
    weights = class_weights(config.loss, labels, counts, config.ens_beta)
    weight_record: dict[str, Any] = {"loss": config.loss, "label_counts": dict(zip(labels, counts.tolist()))}
    if weights is not None:
        weight_record["class_weights"] = dict(zip(labels, [round(float(w), 6) for w in weights]))
        print("class weights: " + ", ".join(f"{k} {v:.4f}" for k, v in weight_record["class_weights"].items()))
    loss_weight = None if weights is None else torch.tensor(weights, dtype=torch.float32)
    model = AutoModelForTokenClassification.from_pretrained(
        config.base_model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label2id,
        classifier_dropout=config.dropout,
    )
    scheme = LabelScheme.from_id2label(dict(enumerate(labels)))
    tagger = CrfTagger(model, scheme) if config.head == "crf" else None
    if tagger is not None and (bad := invalid_moves([f.labels for f in features], scheme)):
        raise ValueError(f"{bad} gold label moves are invalid BIO; a CRF cannot learn them")

    aux_features: list[Feature] = []
    aux_head: AuxHead | None = None
    if config.aux_train:
        aux_docs = [d for p in config.aux_train for d in read_corpus(p, config.aux_tag_map, " ")]
        aux_labels = label_list(aux_docs)
        aux_features, _ = build_features(aux_docs, encoder, {k: i for i, k in enumerate(aux_labels)}, window, policy)
        aux_head = AuxHead(model.config.hidden_size, len(aux_labels), config.dropout)
        weight_record["aux"] = {"documents": len(aux_docs), "windows": len(aux_features), "labels": aux_labels}
        print(f"multi-task: {len(aux_docs)} auxiliary documents, {len(aux_features)} windows, labels {aux_labels}")

    pad_id = tokenizer.pad_token_id or 0
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    strategy = Strategy.FIRST if policy is LabelPolicy.FIRST else Strategy.AVERAGE
    decoding = Decoding.CRF if tagger is not None else Decoding.CONSTRAINED
    log_path = out / "metrics.jsonl"
    with log_path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(weight_record) + "\n")
    board = _tensorboard(out)
    best: dict[str, Any] = {"dev": {"micro": {"f1": -1.0}}}
    step = epoch = 0

    def main_loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return tagger.loss(batch) if tagger is not None else token_loss(model, batch, loss_weight)

    def run_phase(phase: str, epochs: int, optimizer: torch.optim.Optimizer, scheduler: Any, params: list[torch.nn.Parameter]) -> None:
        nonlocal best, step, epoch
        for _ in range(epochs):
            epoch += 1
            model.train()
            if aux_head is not None:
                aux_head.train()
            started, tokens, loss_sum, n_batch = time.perf_counter(), 0, 0.0, 0
            batches = [("main", b) for b in length_grouped_batches(features, config.batch_size, rng)]
            if phase == "multitask":
                aux_batches = length_grouped_batches(aux_features, config.batch_size, rng)
                batches = mixed_batches([b for _, b in batches], aux_batches, config.aux_ratio, rng)
            bar = tqdm(batches, desc=f"{phase} epoch {epoch}", unit="batch", mininterval=5)
            for n_batch, (task, indices) in enumerate(bar, 1):
                source = features if task == "main" else aux_features
                batch = collate(source, indices, pad_id)
                loss = main_loss(batch) if task == "main" else aux_head.loss(model, batch)  # type: ignore[union-attr]
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                tokens += int(batch["attention_mask"].sum())
                loss_sum += float(loss.detach())
                step += 1
                bar.set_postfix(loss=f"{loss_sum / n_batch:.4f}", tok_s=f"{tokens / (time.perf_counter() - started):.0f}", refresh=False)
                if config.max_steps and step >= config.max_steps:
                    break
            seconds = time.perf_counter() - started
            transitions = tagger.crf.to_transitions() if tagger is not None else None
            report = evaluate_documents(dev_docs, Pipeline(encoder, scheme, window, strategy, decoding, transitions), torch_runner(model))
            record = {
                "epoch": epoch,
                "phase": phase,
                "step": step,
                "train_loss": loss_sum / max(n_batch, 1),
                "epoch_seconds": seconds,
                "train_tokens_per_second": tokens / seconds,
                "dev": report,
            }
            with log_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(record) + "\n")
            if board is not None:
                board.add_scalar("train/loss", record["train_loss"], epoch)
                board.add_scalar("dev/f1", report["micro"]["f1"], epoch)
                for kind, prf in report["per_type"].items():
                    board.add_scalar(f"dev/f1_{kind}", prf["f1"], epoch)
            micro = report["micro"]
            print(
                f"{phase} epoch {epoch}: loss {record['train_loss']:.4f}, dev P {micro['precision']:.4f} "
                f"R {micro['recall']:.4f} F1 {micro['f1']:.4f} ({seconds:.0f} s)"
            )
            if micro["f1"] > best["dev"]["micro"]["f1"]:  # type: ignore[index]
                best = record
                model.save_pretrained(out)
                tokenizer.save_pretrained(out)
                extra: dict[str, Any] = {"train_config": asdict(config), "best_epoch": epoch}
                write_serving(out, ServingConfig(window, strategy, decoding, transitions, extra=extra))
            if config.max_steps and step >= config.max_steps:
                return

    if aux_head is not None:
        joint_steps = (steps_per_epoch + aux_batch_count(steps_per_epoch, config.aux_ratio)) * config.aux_epochs
        optimizer, scheduler = optimizer_for([model, aux_head], config, config.max_steps or joint_steps)
        run_phase("multitask", config.aux_epochs, optimizer, scheduler, [*model.parameters(), *aux_head.parameters()])
    extra_groups = []
    if tagger is not None:  # transitions start at zero: they need a far larger step than the encoder
        extra_groups.append({"params": list(tagger.crf.parameters()), "weight_decay": 0.0, "lr": config.crf_learning_rate})
    optimizer, scheduler = optimizer_for([model], config, config.max_steps or steps_per_epoch * config.epochs, extra_groups)
    if not (config.max_steps and step >= config.max_steps):
        run_phase("finetune", config.epochs, optimizer, scheduler, [p for g in optimizer.param_groups for p in g["params"]])
    (out / "best.json").write_text(json.dumps(best, indent=2), encoding="utf-8")
    return best
