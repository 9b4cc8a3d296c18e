"""Domain-adaptive masked-language-model pretraining of the base encoder on unlabeled text.

Whole-word masking over the tokenizer's own words (``word_ids``, so CJK characters and ``IL-2``
are masked the way the NER model will see them): a word is picked with ``mask_probability``;
all its subwords become ``[MASK]`` (80%), a random token (10%) or stay (10%). Texts are cut into
windows of ``max_length`` tokens. A held-out share of the texts, masked once with a fixed seed,
gives the masked-LM perplexity before and after adaptation.

Base checkpoints without a masked-LM head (sentence-transformers models such as the bundled
all-MiniLM-L6-v2) get a freshly initialised one; ``head_warmup_steps`` first trains that head
alone with the encoder frozen, so "before" measures the base encoder with a fitted head and the
difference to "after" is the encoder's adaptation, not the head's initialisation.

Both stretches run in the shared loop (:mod:`train.loop`), so a killed run resumes from its last
epoch with ``resume=True``; training masks are drawn as batches are made, from the run's generator.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

from service.corpora.load import split_dev
from service.decoding.windows import TextEncoder
from train.align import IGNORE
from train.batches import model_inputs, pad_labelled, sorted_batches
from train.config import PretrainConfig, dev_split_seed
from train.data import held_out_split, read_all, read_texts, without_texts_of
from train.device import device_of, resolve, to_device
from train.loop import EpochStats, Phase, TrainingLoop, adamw
from train.seeding import seed_everything
from train.task import refuse_token_types
from train.vocab import extend_vocabulary


@dataclass(frozen=True)
class Chunk:
    input_ids: np.ndarray  # specials included
    word_ids: np.ndarray  # -1 on specials


def chunk_texts(texts: Sequence[str], encoder: TextEncoder, max_length: int) -> list[Chunk]:
    """Windows of at most ``max_length`` tokens, cut at word starts where possible."""
    room = max_length - encoder.n_special
    chunks = []
    for encoded in encoder.encode_batch(list(texts)):
        n = len(encoded)
        lo = 0
        while lo < n:
            hi = min(lo + room, n)
            if hi < n:  # do not split a word across chunks unless it is longer than a chunk
                cut = hi
                while cut > lo + 1 and encoded.word_ids[cut] == encoded.word_ids[cut - 1]:
                    cut -= 1
                hi = cut if cut > lo + 1 else hi
            ids = np.concatenate([encoder.prefix_ids, encoded.ids[lo:hi], encoder.suffix_ids]).astype(np.int64)
            words = np.concatenate(
                [np.full(len(encoder.prefix_ids), -1), encoded.word_ids[lo:hi], np.full(len(encoder.suffix_ids), -1)]
            ).astype(np.int64)
            chunks.append(Chunk(ids, words))
            lo = hi
    return chunks


def mask_words(
    chunk: Chunk, probability: float, mask_id: int, vocab_size: int, special_ids: set[int], rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Whole-word masking of one chunk: ``(input_ids, labels)``; at least one word is masked."""
    ids = chunk.input_ids.copy()
    labels = np.full_like(ids, IGNORE)
    words = np.unique(chunk.word_ids[chunk.word_ids >= 0])
    if words.size == 0:
        return ids, labels
    picked = words[rng.random(words.size) < probability]
    if picked.size == 0:
        picked = rng.choice(words, 1)
    for word in picked:
        positions = np.nonzero(chunk.word_ids == word)[0]
        labels[positions] = ids[positions]
        roll = rng.random()
        if roll < 0.8:
            ids[positions] = mask_id
        elif roll < 0.9:
            ids[positions] = rng.integers(0, vocab_size, positions.size)
    labels[np.isin(chunk.input_ids, list(special_ids))] = IGNORE
    return ids, labels


def masked_loss(model: Any, batch: dict[str, torch.Tensor], reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy at the masked positions, projecting only those onto the vocabulary.

    For a 6-layer, 384-wide encoder the vocabulary projection costs more than the encoder, and the
    loss needs it at ~15% of the positions; this is the same loss as ``model(**batch).loss``.
    Architectures whose head is not ``cls`` (BERT's) take the full-sequence path.
    """
    labels = batch["labels"]
    head = getattr(model, "cls", None)
    if head is None:
        logits = model(**model_inputs(batch)).logits
        flat = logits.view(-1, logits.shape[-1])
        return torch.nn.functional.cross_entropy(flat, labels.view(-1), ignore_index=IGNORE, reduction=reduction)
    hidden = model.base_model(**model_inputs(batch)).last_hidden_state
    keep = labels != IGNORE
    return torch.nn.functional.cross_entropy(head(hidden[keep]), labels[keep], reduction=reduction)


def perplexity(model: torch.nn.Module, masked: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int, batch_size: int) -> float:
    """exp of the mean cross-entropy over every masked token of the held-out set."""
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for group in sorted_batches([len(ids) for ids, _ in masked], batch_size, None):
            batch = to_device(pad_labelled([masked[i] for i in group], pad_id), device_of(model))
            total += float(masked_loss(model, batch, reduction="sum"))
            count += int((batch["labels"] != IGNORE).sum())
    return math.exp(total / max(count, 1))


def adapted_tokenizer(config: PretrainConfig, out: Path) -> tuple[Any, list[str]]:
    """The base tokenizer or, with ``add_vocab_from``, one saved in ``out`` with the corpus's unknown characters appended."""
    if not config.add_vocab_from:
        return AutoTokenizer.from_pretrained(config.base_model, use_fast=True), []
    corpus_texts = [t for p in config.add_vocab_from for t in read_texts(p, config.separator)]
    AutoTokenizer.from_pretrained(config.base_model, use_fast=True).save_pretrained(out / "base-tokenizer")
    added = extend_vocabulary(out / "base-tokenizer", out, corpus_texts)
    print(f"vocabulary: {len(added)} characters added ({''.join(added[:20])}...)")
    return AutoTokenizer.from_pretrained(str(out), use_fast=True), added


def masked_lm(config: PretrainConfig, vocab_size: int | None) -> tuple[Any, bool]:
    """The base checkpoint with a masked-LM head (embeddings grown to ``vocab_size``); True when the head is new."""
    model, loading = AutoModelForMaskedLM.from_pretrained(config.base_model, output_loading_info=True)
    if vocab_size is not None:
        model.resize_token_embeddings(vocab_size)
    head_initialised = any(not k.startswith(model.base_model_prefix) for k in loading["missing_keys"])
    model.to(resolve(config.device))
    if head_initialised and not config.head_warmup_steps:
        print("warning: the base model has no masked-LM head; 'before' perplexity uses an untrained head (see --head-warmup-steps)")
    return model, head_initialised


@contextmanager
def frozen(module: torch.nn.Module) -> Iterator[None]:
    """Train around ``module``: its parameters take no gradient inside the block."""
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in module.parameters():
            p.requires_grad_(True)


@dataclass
class Adaptation:
    """The model and its windows: training batches are masked as they are made, from the run's generator."""

    model: Any
    tokenizer: Any
    chunks: list[Chunk]
    held_out: list[tuple[np.ndarray, np.ndarray]]  # masked once, with a fixed seed: the same test every time
    mask: Callable[..., tuple[np.ndarray, np.ndarray]]
    batch_size: int
    rng: np.random.Generator
    sizes: dict[str, Any]  # what pretrain.json reports about the data and the head

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id or 0)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.chunks) / self.batch_size)

    def phase(self, name: str, steps: int, params: list[torch.nn.Parameter], learning_rate: float, until: int) -> Phase[list[int]]:
        """``steps`` optimiser steps (whole passes, the last one cut) ending at the run's step ``until``."""
        optimizer, scheduler = adamw([{"params": params, "weight_decay": 0.01}], learning_rate, steps, 0.1)
        return Phase(name, math.ceil(steps / self.steps_per_epoch), optimizer, scheduler, params, self.plan, self.step, until)

    def plan(self) -> list[list[int]]:
        return sorted_batches([len(c.input_ids) for c in self.chunks], self.batch_size, self.rng)

    def step(self, group: list[int]) -> tuple[torch.Tensor, int]:
        batch = to_device(pad_labelled([self.mask(self.chunks[i], rng=self.rng) for i in group], self.pad_id), device_of(self.model))
        return masked_loss(self.model, batch), int(batch["attention_mask"].sum())

    def perplexity(self) -> float:
        return perplexity(self.model, self.held_out, self.pad_id, self.batch_size)


def prepare(config: PretrainConfig, out: Path, rng: np.random.Generator) -> Adaptation:
    """Texts split into held-out and training windows, the (extended) tokenizer and the masked-LM model."""
    texts = [t for p in config.text for t in read_texts(p, config.separator)]
    left_out = 0
    if config.exclude_dev_of:
        # carved exactly as `bioner train --train <these paths>` carves it (same order, seed, share and joining)
        docs = read_all(config.exclude_dev_of, None, config.separator, config.dev_join_sentences)
        dev = split_dev(docs, config.dev_fraction, dev_split_seed(config.seed, config.dev_seed))[1]
        kept = without_texts_of(texts, [d.text for d in dev])
        print(f"{len(texts) - len(kept)} texts left out: the dev split of {', '.join(config.exclude_dev_of)} ({len(dev)} documents)")
        texts, left_out = kept, len(texts) - len(kept)
    held_texts, train_texts = held_out_split(texts, config.held_out_fraction, config.seed)
    tokenizer, added = adapted_tokenizer(config, out)
    model, head_initialised = masked_lm(config, len(tokenizer) if added else None)
    encoder = TextEncoder(tokenizer.backend_tokenizer)
    train_chunks, held_chunks = chunk_texts(train_texts, encoder, config.max_length), chunk_texts(held_texts, encoder, config.max_length)
    if not train_chunks:
        raise ValueError("no text left to adapt on beside the held-out share")
    special = set(tokenizer.all_special_ids)
    mask = partial(
        mask_words,
        probability=config.mask_probability,
        mask_id=int(tokenizer.mask_token_id),
        vocab_size=len(tokenizer),
        special_ids=special,
    )
    fixed = np.random.default_rng(config.seed + 7)
    held_out = [mask(c, rng=fixed) for c in held_chunks]
    print(f"{len(train_texts)} texts ({len(train_chunks)} windows) to adapt on, {len(held_texts)} held out ({len(held_chunks)} windows)")
    sizes = {
        "texts": len(texts),
        "dev_texts_left_out": left_out,
        "train_windows": len(train_chunks),
        "held_out_windows": len(held_chunks),
        "added_vocabulary": len(added),
    }
    return Adaptation(
        model, tokenizer, train_chunks, held_out, mask, config.batch_size, rng, {**sizes, "head_initialised": head_initialised}
    )


def add_seconds(record: dict[str, Any], key: str) -> Callable[[EpochStats], None]:
    """End of an epoch: add its time to ``record[key]`` (summed over a resumed run's parts) and say how it went."""

    def on_epoch_end(stats: EpochStats) -> None:
        record[key] = record.get(key, 0.0) + stats.seconds
        speed = stats.tokens / stats.seconds
        print(f"{stats.phase} epoch {stats.epoch}: loss {stats.loss:.4f}, step {stats.step}, {stats.seconds:.0f} s, {speed:.0f} tokens/s")

    return on_epoch_end


def pretrain(config: PretrainConfig, *, resume: bool = False, stop_after: int = 0) -> dict[str, Any]:
    """Adapt the encoder and save it to ``output``; returns the perplexity record (also ``pretrain.json``).

    ``resume`` continues the run in ``output`` after its last epoch; ``stop_after`` pauses it after that many epochs.
    """
    refuse_token_types(config.base_model, "pretrain")
    seed_everything(config.seed, config.threads)
    out = Path(config.output)
    loop = TrainingLoop(out, asdict(config), resume=resume, stop_after=stop_after)
    if loop.finished:
        return dict(loop.extra["record"])
    rng = np.random.default_rng(config.seed)
    job = prepare(config, out, rng)
    loop.track({"model": job.model}, rng)
    if "record" not in loop.extra:
        loop.extra["record"] = {"config": asdict(config), **job.sizes, "perplexity_as_loaded": job.perplexity()}
    record = loop.extra["record"]
    warmup = config.head_warmup_steps
    if warmup:
        with frozen(job.model.base_model):
            head = [p for p in job.model.parameters() if p.requires_grad]
            loop.run(job.phase("head warm-up", warmup, head, config.head_learning_rate, warmup), add_seconds(record, "head_warmup_seconds"))
    if "perplexity_before" not in record:  # a run resumed in its adaptation has it from before
        record["perplexity_before"] = job.perplexity()
    print(f"held-out masked-LM perplexity before adaptation: {record['perplexity_before']:.2f}")
    steps = record["adapt_steps"] = config.max_steps or config.epochs * job.steps_per_epoch
    adapt = job.phase("domain adaptation", steps, list(job.model.parameters()), config.learning_rate, warmup + steps)
    loop.run(adapt, add_seconds(record, "adapt_seconds"))
    if loop.paused:
        return record
    record["perplexity_after"] = job.perplexity()
    print(f"held-out masked-LM perplexity after adaptation: {record['perplexity_after']:.2f}")
    job.model.save_pretrained(out)
    job.tokenizer.save_pretrained(out)
    (out / "pretrain.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    loop.finish()
    return record
