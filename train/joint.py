"""Multi-task training of one encoder with one token-classification head per corpus (or per group of
corpora, and per type of a corpus: ``train.corpus_spec``).

Corpora annotate differently (JNLPBA's ``protein`` is not BC2GM's ``GENE``; NCBI-disease and BC5CDR
draw disease boundaries differently), so each keeps its own labels and head. Every step takes one
batch from one corpus, drawn with probability proportional to its windows to the power
``sampling_alpha`` (0.5 by default: large corpora still lead, small ones are seen far more often
than their share, as in multi-task NER practice). Windows, label policy (first subword) and dev
decoding are the single-corpus run's; the best epoch is the one with the best mean dev F1 over
heads. The checkpoint (``encoder/``, ``heads.pt``, ``serving.json`` with the heads) is exported by
``bioner export-joint`` to one ONNX graph whose logits hold every head's columns side by side.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from service.bundle_format import HeadSpec, ServingConfig, heads_of, write_serving
from service.corpora import Document
from service.decoding.aggregate import Decoding, Strategy
from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Pipeline
from service.decoding.windows import TextEncoder, WindowConfig
from train.align import IGNORE, Feature, LabelPolicy, build_features, label_list
from train.backends import torch_runner
from train.batches import collate, length_grouped_batches, model_inputs
from train.config import JointConfig
from train.corpus_spec import merged, parse_heads, source_splits
from train.device import resolve, to_device
from train.evaluate import evaluate_documents
from train.loop import EpochStats, Phase, TrainingLoop, adamw, decay_groups
from train.seeding import seed_everything
from train.task import refuse_token_types

HEADS_FILE = "heads.pt"
ENCODER_DIR = "encoder"


class MultiHeadTagger(torch.nn.Module):
    """The shared encoder and one linear head per corpus; ``forward`` gives every head's logits
    side by side (what the exported graph computes), ``loss`` one head's on its own batch."""

    def __init__(self, encoder: Any, sizes: dict[str, int], dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.order = list(sizes)
        self.dropout = torch.nn.Dropout(dropout)
        self.heads = torch.nn.ModuleDict({name: torch.nn.Linear(encoder.config.hidden_size, n) for name, n in sizes.items()})

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> Any:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        return _Logits(torch.cat([self.heads[name](hidden) for name in self.order], dim=-1))

    def loss(self, name: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.encoder(**model_inputs(batch)).last_hidden_state
        logits = self.heads[name](self.dropout(hidden))
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), batch["labels"].view(-1), ignore_index=IGNORE)


@dataclass
class _Logits:
    """What ``torch_runner`` reads from a model's output (``.logits``), as transformers' outputs have it."""

    logits: torch.Tensor


@dataclass
class Corpus:
    name: str
    labels: list[str]
    train: list[Document]
    dev: list[Document]
    features: list[Feature]
    dev_by_source: dict[str, list[Document]] = field(default_factory=dict)  # a head fed by several sources


def load_corpora(config: JointConfig, encoder: TextEncoder, window: WindowConfig) -> list[Corpus]:
    corpora = []
    for head in parse_heads(config.corpora):
        splits = source_splits(head, config.separator, config.join_sentences, config.dev_fraction, config.seed)
        train_docs, dev_docs = merged(splits)
        labels = label_list(train_docs + dev_docs)
        features, _ = build_features(train_docs, encoder, {k: i for i, k in enumerate(labels)}, window, LabelPolicy.FIRST)
        print(f"{head.name}: {len(train_docs)} train / {len(dev_docs)} dev documents, {len(features)} windows, labels {labels}")
        by_source = {key: dev for key, (_, dev) in splits.items()} if len(splits) > 1 else {}
        corpora.append(Corpus(head.name, labels, train_docs, dev_docs, features, by_source))
    return corpora


def batches_held(corpora: list[Corpus], batch_size: int) -> int:
    return sum(math.ceil(len(c.features) / batch_size) for c in corpora)


def draw_plan(corpora: list[Corpus], batch_size: int, alpha: float, rng: np.random.Generator, total: int) -> list[tuple[str, list[int]]]:
    """One epoch: ``total`` batches, each from a corpus drawn ∝ windows^alpha; a corpus drawn more
    often than it has batches starts a fresh shuffle of its windows."""
    sizes = np.array([len(c.features) for c in corpora], dtype=np.float64)
    weights = sizes**alpha / (sizes**alpha).sum()
    queues: dict[str, list[list[int]]] = {c.name: [] for c in corpora}
    plan = []
    for pick in rng.choice(len(corpora), size=total, p=weights):
        corpus = corpora[int(pick)]
        if not queues[corpus.name]:
            queues[corpus.name] = length_grouped_batches(corpus.features, batch_size, rng)
        plan.append((corpus.name, queues[corpus.name].pop()))
    return plan


def heads_spec(corpora: list[Corpus]) -> tuple[HeadSpec, ...]:
    return tuple(HeadSpec(c.name, tuple(c.labels)) for c in corpora)


def train_joint(config: JointConfig, *, resume: bool = False, stop_after: int = 0) -> dict[str, Any]:
    """Run it; returns the best epoch's record (per-head dev reports and their mean micro F1)."""
    seed_everything(config.seed, config.threads)
    out = Path(config.output)
    loop = TrainingLoop(out, asdict(config), resume=resume, stop_after=stop_after)
    if loop.finished:
        return dict(loop.extra["best"])
    refuse_token_types(config.base_model, "train-joint")
    tokenizer = AutoTokenizer.from_pretrained(config.base_model, use_fast=True)
    encoder_text = TextEncoder(tokenizer.backend_tokenizer)
    window = WindowConfig(config.max_length, config.stride)
    corpora = load_corpora(config, encoder_text, window)
    model = MultiHeadTagger(AutoModel.from_pretrained(config.base_model), {c.name: len(c.labels) for c in corpora}, config.dropout)
    device = resolve(config.device)
    model.to(device)
    specs = heads_spec(corpora)
    all_labels = [label for spec in specs for label in spec.labels]
    pipeline = Pipeline(encoder_text, heads_of(specs, LabelScheme.from_id2label(dict(enumerate(all_labels)))), window)
    rng = np.random.default_rng(config.seed)
    loop.track({"model": model}, rng)
    if not loop.resumed:
        loop.log({"heads": {c.name: {"labels": c.labels, "windows": len(c.features)} for c in corpora}})
    loop.extra.setdefault("best", {"mean_f1": -1.0})
    by_name = {c.name: c for c in corpora}
    pad_id = tokenizer.pad_token_id or 0

    def step(item: tuple[str, list[int]]) -> tuple[torch.Tensor, int]:
        name, indices = item
        batch = to_device(collate(by_name[name].features, indices, pad_id), device)
        return model.loss(name, batch), int(batch["attention_mask"].sum())

    def end_of_epoch(stats: EpochStats) -> None:
        run = torch_runner(model)
        reports = {c.name: evaluate_documents(c.dev, pipeline.head(c.name), run) for c in corpora}
        mean_f1 = float(np.mean([r["micro"]["f1"] for r in reports.values()]))
        record: dict[str, Any] = {"epoch": stats.epoch, "step": stats.step, "train_loss": stats.loss, "epoch_seconds": stats.seconds}
        record |= {"train_tokens_per_second": stats.tokens / stats.seconds, "mean_f1": mean_f1, "dev": reports}
        by_source = {
            c.name: {key: evaluate_documents(dev, pipeline.head(c.name), run) for key, dev in c.dev_by_source.items()}
            for c in corpora
            if c.dev_by_source
        }
        if by_source:
            record["dev_by_source"] = by_source
        loop.log(record)
        print(
            f"epoch {stats.epoch}: loss {stats.loss:.4f}, mean dev F1 {mean_f1:.4f} "
            + " ".join(f"{k} {r['micro']['f1']:.4f}" for k, r in reports.items())
        )
        if mean_f1 > loop.extra["best"]["mean_f1"]:
            loop.extra["best"] = record
            save_checkpoint(
                out,
                model,
                tokenizer,
                ServingConfig(
                    window,
                    Strategy.FIRST,
                    Decoding.CONSTRAINED,
                    heads=specs,
                    extra={"train_config": asdict(config), "best_epoch": stats.epoch},
                ),
            )

    steps_per_epoch = config.steps_per_epoch or batches_held(corpora, config.batch_size)
    optimizer, scheduler = adamw(
        decay_groups([model], config.weight_decay),
        config.learning_rate,
        config.max_steps or steps_per_epoch * config.epochs,
        config.warmup_ratio,
    )
    plan = lambda: draw_plan(corpora, config.batch_size, config.sampling_alpha, rng, steps_per_epoch)  # noqa: E731
    loop.run(Phase("joint", config.epochs, optimizer, scheduler, list(model.parameters()), plan, step, config.max_steps), end_of_epoch)
    best: dict[str, Any] = loop.extra["best"]
    if not loop.paused:
        (out / "best.json").write_text(json.dumps(best, indent=2), encoding="utf-8")
        loop.finish()
    return best


def save_checkpoint(out: Path, model: MultiHeadTagger, tokenizer: Any, serving: ServingConfig) -> None:
    model.encoder.save_pretrained(out / ENCODER_DIR)
    tokenizer.save_pretrained(out / ENCODER_DIR)
    torch.save({"order": model.order, "state": model.heads.state_dict()}, out / HEADS_FILE)
    write_serving(out, serving)


def load_checkpoint(folder: Path) -> tuple[MultiHeadTagger, ServingConfig]:
    from service.bundle_format import read_serving

    serving = read_serving(folder)
    saved = torch.load(folder / HEADS_FILE, map_location="cpu")
    sizes = {spec.name: len(spec.labels) for spec in serving.heads}
    model = MultiHeadTagger(AutoModel.from_pretrained(folder / ENCODER_DIR), sizes, 0.0)
    model.heads.load_state_dict(saved["state"])
    return model.eval(), serving
