"""A fine-tuning task: the labelled windows, the model with its heads, and the loss of one batch.

Built once per run from its settings and documents, before the first step. The construction order
(encoder and classifier, CRF head, auxiliary head) is the order in which they draw initial weights
from torch's generator; keep it, or the same seed stops giving the same model.

With an auxiliary corpus (GERBERA-style multi-task learning) the shared encoder gets a second
classifier, :class:`AuxHead`, for that corpus's labels; it is trained, never saved.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForTokenClassification, AutoTokenizer

from service.bundle_format import CONFIG_FILE, SERVING_FILE, read_serving
from service.corpora import Document
from service.decoding.aggregate import Decoding, Strategy
from service.decoding.labels import LabelScheme
from service.decoding.token_types import TokenTypes
from service.decoding.windows import Align, TextEncoder, WindowConfig
from train.align import IGNORE, Feature, LabelPolicy, build_features, label_list
from train.batches import collate, length_grouped_batches, mixed_batches, model_inputs
from train.config import TrainConfig
from train.crf import CrfTagger, invalid_moves
from train.data import read_all, read_texts, without_texts_of
from train.device import resolve, to_device
from train.distill import Teacher, distill_loss, shrink, teacher_probabilities, teacher_word_marginals
from train.losses import class_weights, label_counts
from train.qat import QuantSim

Item = tuple[str, list[int]]  # ("main" | "aux", window indices): one batch of a plan


def token_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], weight: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy over trained subwords, class-weighted when ``weight`` is given."""
    if weight is None:
        return model(**batch).loss
    logits = model(**model_inputs(batch)).logits
    flat = logits.view(-1, logits.shape[-1])
    return torch.nn.functional.cross_entropy(flat, batch["labels"].view(-1), weight=weight, ignore_index=IGNORE)


class AuxHead(torch.nn.Module):
    """The auxiliary corpus's classifier over the shared encoder's last hidden states."""

    def __init__(self, hidden_size: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = torch.nn.Dropout(dropout)
        self.classifier = torch.nn.Linear(hidden_size, n_labels)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        encoder: Any = model.base_model  # the shared encoder under any token-classification head
        hidden = encoder(**model_inputs(batch)).last_hidden_state
        logits = self.classifier(self.dropout(hidden))
        return torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), batch["labels"].view(-1), ignore_index=IGNORE)


@dataclass
class Task:
    labels: list[str]
    tokenizer: Any
    encoder: TextEncoder
    window: WindowConfig
    policy: LabelPolicy
    features: list[Feature]
    model: Any
    tagger: CrfTagger | None
    loss_weight: torch.Tensor | None
    header: dict[str, Any]  # metrics.jsonl's first line: loss, label counts, class weights, auxiliary corpus
    aux_features: list[Feature] = field(default_factory=list)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    aux_head: AuxHead | None = None
    teacher: Teacher | None = None
    extra_features: list[Feature] = field(default_factory=list)  # unlabelled windows (--distill-text): soft labels only
    extra_teacher: Teacher | None = None
    quant_sim: QuantSim | None = None  # --qat-epochs: int8 rounding simulated in the model's layers

    @property
    def scheme(self) -> LabelScheme:
        return LabelScheme.from_id2label(dict(enumerate(self.labels)))

    @property
    def strategy(self) -> Strategy:
        return Strategy.FIRST if self.policy is LabelPolicy.FIRST else Strategy.AVERAGE

    @property
    def decoding(self) -> Decoding:
        return Decoding.CRF if self.tagger is not None else Decoding.CONSTRAINED

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        """Everything trained, by name: what a resume state saves and restores."""
        modules: dict[str, torch.nn.Module] = {"model": self.model}
        if self.tagger is not None:
            modules["crf"] = self.tagger.crf
        if self.aux_head is not None:
            modules["aux"] = self.aux_head
        if self.quant_sim is not None:
            modules["qat"] = self.quant_sim  # the observed ranges resume with the weights
        return modules

    def main_plan(self, batch_size: int, rng: np.random.Generator) -> list[Item]:
        """Every labelled window once and, when distilling on unlabelled text, every one of those too, interleaved."""
        main: list[Item] = [("main", b) for b in length_grouped_batches(self.features, batch_size, rng)]
        if not self.extra_features:
            return main
        items = main + [("extra", b) for b in length_grouped_batches(self.extra_features, batch_size, rng)]
        return [items[i] for i in rng.permutation(len(items))]

    def batches_per_epoch(self, batch_size: int) -> int:
        return math.ceil(len(self.features) / batch_size) + math.ceil(len(self.extra_features) / batch_size)

    def mixed_plan(self, batch_size: int, ratio: float, rng: np.random.Generator) -> list[Item]:
        main = length_grouped_batches(self.features, batch_size, rng)
        return mixed_batches(main, length_grouped_batches(self.aux_features, batch_size, rng), ratio, rng)

    def place(self, device: torch.device) -> None:
        """Every trained module and the class weights on ``device`` (built on the CPU first, so the
        seed gives the same initial weights wherever the run trains)."""
        self.device = device
        for module in (self.model, self.tagger.crf if self.tagger else None, self.aux_head, self.quant_sim):
            if module is not None:
                module.to(device)
        if self.loss_weight is not None:
            self.loss_weight = self.loss_weight.to(device)

    def step(self, item: Item) -> tuple[torch.Tensor, int]:
        """The loss of one batch and its number of tokens."""
        corpus, indices = item
        features = {"main": self.features, "aux": self.aux_features, "extra": self.extra_features}[corpus]
        batch = to_device(collate(features, indices, self.tokenizer.pad_token_id or 0), self.device)
        teacher = self.extra_teacher if corpus == "extra" else self.teacher  # extra windows: soft labels alone
        if corpus == "aux":
            loss = self.aux_head.loss(self.model, batch)  # type: ignore[union-attr]
        elif self.tagger is not None and teacher is not None:
            soft = teacher.word_batch(indices, int((batch["labels"] != IGNORE).sum(1).max())).to(self.device)
            loss = self.tagger.distill_loss(batch, soft, teacher.alpha, teacher.temperature)
        elif self.tagger is not None:
            loss = self.tagger.loss(batch)
        elif teacher is not None:
            soft = teacher.batch(indices, batch["input_ids"].shape[1]).to(self.device)
            logits = self.model(**model_inputs(batch)).logits
            loss = distill_loss(logits, batch["labels"], soft, teacher, self.loss_weight)
        else:
            loss = token_loss(self.model, batch, self.loss_weight)
        return loss, int(batch["attention_mask"].sum())


def prepare(config: TrainConfig, train_docs: list[Document], dev_docs: list[Document]) -> Task:
    """Windows and labels from the documents, class weights, then the model and its heads."""
    labels = label_list(train_docs + dev_docs)
    tokenizer = AutoTokenizer.from_pretrained(config.base_model, use_fast=True)
    window, policy = WindowConfig(config.max_length, config.stride, Align(config.window_align)), LabelPolicy(config.label_policy)
    token_types = resolve_token_types(config)
    encoder = TextEncoder(tokenizer.backend_tokenizer, token_types)
    features, stats = build_features(train_docs, encoder, {label: i for i, label in enumerate(labels)}, window, policy)
    print(
        f"{len(train_docs)} train / {len(dev_docs)} dev documents, {len(features)} windows, "
        f"{stats.misaligned_spans} entity boundaries inside a word"
    )
    header, loss_weight = weighting(config, labels, features)
    check_continued_labels(Path(config.base_model), labels)
    model = AutoModelForTokenClassification.from_pretrained(
        config.base_model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        classifier_dropout=config.dropout,
    )
    if token_types is not TokenTypes.NONE and getattr(model.config, "type_vocab_size", 0) < 2:
        raise ValueError(f"--token-types {token_types.value} needs an encoder with two token types; {config.base_model} has none to spare")
    if token_types is not read_serving(Path(config.base_model)).token_types:
        start_token_types(model)
    header["token_types"] = token_types.value
    if config.student_layers:
        header["student_layers"] = shrink(model, config.student_layers)
    task = Task(labels, tokenizer, encoder, window, policy, features, model, None, loss_weight, header)
    if config.teacher:
        add_teacher(task, config, [d.text for d in dev_docs])
    if config.head == "crf":
        task.tagger = CrfTagger(model, task.scheme)
        if (continued := read_serving(Path(config.base_model)).transitions) is not None:
            task.tagger.crf.load(continued)  # continuing a CRF checkpoint (e.g. with --qat-epochs): its transitions too
        if bad := invalid_moves([f.labels for f in features], task.scheme):
            raise ValueError(f"{bad} gold label moves are invalid BIO; a CRF cannot learn them")
    if config.aux_train:
        add_auxiliary(task, config)
    if config.qat_epochs:
        task.quant_sim = QuantSim(model)
    task.place(resolve(config.device))
    return task


def resolve_token_types(config: TrainConfig) -> TokenTypes:
    """``--token-types``, else the base checkpoint's (none for a plain encoder or a hub name)."""
    if config.token_types is not None:
        return TokenTypes(config.token_types)
    return read_serving(Path(config.base_model)).token_types


def refuse_token_types(base_model: str, command: str) -> None:
    """``command`` feeds no token types: a base trained to read them would silently run uncased."""
    if (kind := read_serving(Path(base_model)).token_types) is not TokenTypes.NONE:
        raise ValueError(f"{base_model} reads token types {kind.value!r}, which {command} does not mark: start from an uncased base")


def start_token_types(model: Any) -> None:
    """Type 1 starts as type 0's embedding: the network starts as the one it was without the types
    (BERT's type 1 was pretrained as "sentence B", a meaning a tagger of one text does not want),
    and learns what the marked subwords have in common from there."""
    weight = model.base_model.embeddings.token_type_embeddings.weight
    with torch.no_grad():
        weight[1:] = weight[0]


def check_continued_labels(base: Path, labels: list[str]) -> None:
    """A token-classification checkpoint as base (continuing training) must tag with this run's labels in
    this order: its classifier rows would otherwise silently mean other labels. That is a bioner
    checkpoint (``serving.json``) or any Hugging Face ``...ForTokenClassification`` one."""
    if not (base / CONFIG_FILE).exists():
        return  # a hub name: resolved (and refused offline) by transformers
    config = json.loads((base / CONFIG_FILE).read_text(encoding="utf-8"))
    tagger = any(str(a).endswith("ForTokenClassification") for a in config.get("architectures") or ())
    if not (base / SERVING_FILE).exists() and not tagger:
        return  # a plain encoder (or a masked-LM one): the classifier starts fresh
    saved = config.get("id2label", {})
    theirs = [saved[k] for k in sorted(saved, key=int)]
    if theirs != labels:
        raise ValueError(f"{base} tags {theirs}, this run's data {labels}: continue a checkpoint only on data with its labels")


def weighting(config: TrainConfig, labels: list[str], features: list[Feature]) -> tuple[dict[str, Any], torch.Tensor | None]:
    """The label counts and class weights record, and the weights as the loss takes them (None: plain CE)."""
    counts = label_counts([f.labels for f in features], len(labels))
    weights = class_weights(config.loss, labels, counts, config.ens_beta)
    record: dict[str, Any] = {"loss": config.loss, "label_counts": dict(zip(labels, counts.tolist()))}
    if weights is None:
        return record, None
    record["class_weights"] = dict(zip(labels, [round(float(w), 6) for w in weights]))
    print("class weights: " + ", ".join(f"{k} {v:.4f}" for k, v in record["class_weights"].items()))
    return record, torch.tensor(weights, dtype=torch.float32)


def add_teacher(task: Task, config: TrainConfig, dev_texts: Sequence[str] = ()) -> None:
    """The teachers' soft labels on the training windows and on the unlabelled ones of ``--distill-text``.

    Unlabelled text that shares text with a dev document is left out: other corpora quote
    sentences of the same abstracts, and the student must not see dev text, even teacher-labelled."""
    t = config.distill_temperature
    record: dict[str, Any] = {"teachers": config.teacher, "alpha": config.distill_alpha, "temperature": t}
    if config.distill_text:
        read = [text for path in config.distill_text for text in read_texts(path, config.separator)]
        texts = without_texts_of(read, dev_texts)
        if len(texts) < len(read):
            print(f"{len(read) - len(texts)} unlabelled texts left out: they share text with the dev documents")
        docs = [Document(f"distill-{i}", text, ()) for i, text in enumerate(texts)]
        label2id = {label: i for i, label in enumerate(task.labels)}
        task.extra_features, _ = build_features(docs, task.encoder, label2id, task.window, task.policy)
        record["text"] = {
            "paths": config.distill_text,
            "texts": len(texts),
            "left_out_as_dev_text": len(read) - len(texts),
            "windows": len(task.extra_features),
        }
    # one pass per teacher over the labelled and unlabelled windows together
    vocabulary = task.tokenizer.backend_tokenizer.get_vocab()
    soft_labels = teacher_word_marginals if config.head == "crf" else teacher_probabilities
    soft = soft_labels(config.teacher, task.features + task.extra_features, task.labels, vocabulary, t, task.encoder.token_types)
    n = len(task.features)
    task.teacher = Teacher(soft[:n], config.distill_alpha, t)
    if task.extra_features:
        task.extra_teacher = Teacher(soft[n:], 1.0, t)
    task.header["distill"] = record
    print(f"distilling from {len(config.teacher)} teacher(s) (temperature {t}, alpha {config.distill_alpha}), record {record}")


def add_auxiliary(task: Task, config: TrainConfig) -> None:
    """The auxiliary corpus's windows (its own labels) and head, for the multi-task phase."""
    aux_docs = read_all(config.aux_train, config.aux_tag_map, " ")
    aux_labels = label_list(aux_docs)
    task.aux_features, _ = build_features(aux_docs, task.encoder, {k: i for i, k in enumerate(aux_labels)}, task.window, task.policy)
    task.aux_head = AuxHead(task.model.config.hidden_size, len(aux_labels), config.dropout)
    task.header["aux"] = {"documents": len(aux_docs), "windows": len(task.aux_features), "labels": aux_labels}
    print(f"multi-task: {len(aux_docs)} auxiliary documents, {len(task.aux_features)} windows, labels {aux_labels}")
