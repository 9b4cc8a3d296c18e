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
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer, get_linear_schedule_with_warmup

from service.corpora import read_corpus
from service.decoding.windows import TextEncoder
from train.align import IGNORE
from train.finetune import pad_labelled
from train.seeding import seed_everything
from train.vocab import extend_vocabulary


@dataclass
class PretrainConfig:
    text: list[str]
    base_model: str
    output: str
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5
    max_length: int = 128
    mask_probability: float = 0.15
    held_out_fraction: float = 0.05
    head_warmup_steps: int = 0
    head_learning_rate: float = 1e-3
    add_vocab_from: list[str] = field(default_factory=list)
    separator: str = " "
    seed: int = 13
    threads: int = 0
    max_steps: int = 0


def read_texts(path: str | Path, separator: str = " ") -> list[str]:
    """Raw texts: ``.txt`` files give one text per non-empty line; anything else goes through the NER readers."""
    path = Path(path)
    if path.is_dir() and not any(path.glob("*.ann")):
        return [t for f in sorted(path.iterdir()) if f.is_file() and not f.name.startswith(".") for t in read_texts(f, separator)]
    if path.is_file() and path.suffix == ".txt":
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [d.text for d in read_corpus(path, None, separator) if d.text.strip()]


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


def batches(items: Sequence[Any], size: int, key: Any, rng: np.random.Generator | None) -> Iterator[list[Any]]:
    """Length-sorted batches (little padding), in random order when ``rng`` is given."""
    order = sorted(range(len(items)), key=lambda i: key(items[i]))
    groups = [[items[i] for i in order[lo : lo + size]] for lo in range(0, len(order), size)]
    if rng is not None:
        rng.shuffle(groups)  # type: ignore[arg-type]
    yield from groups


def perplexity(model: torch.nn.Module, masked: Sequence[tuple[np.ndarray, np.ndarray]], pad_id: int, batch_size: int) -> float:
    """exp of the mean cross-entropy over every masked token of the held-out set."""
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for rows in batches(masked, batch_size, lambda r: len(r[0]), None):
            batch = pad_labelled(rows, pad_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = torch.nn.functional.cross_entropy(
                logits.view(-1, logits.shape[-1]), batch["labels"].view(-1), ignore_index=IGNORE, reduction="sum"
            )
            total += float(loss)
            count += int((batch["labels"] != IGNORE).sum())
    return math.exp(total / max(count, 1))


def pretrain(config: PretrainConfig) -> dict[str, Any]:
    seed_everything(config.seed, config.threads)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    texts = [t for p in config.text for t in read_texts(p, config.separator)]
    order = list(range(len(texts)))
    random.Random(config.seed).shuffle(order)
    n_held = max(1, int(round(len(texts) * config.held_out_fraction)))
    held_texts, train_texts = [texts[i] for i in order[:n_held]], [texts[i] for i in order[n_held:]]

    tokenizer_source = config.base_model
    added: list[str] = []
    if config.add_vocab_from:
        corpus_texts = [t for p in config.add_vocab_from for t in read_texts(p, config.separator)]
        base_tokenizer = AutoTokenizer.from_pretrained(config.base_model, use_fast=True)
        base_tokenizer.save_pretrained(out / "base-tokenizer")
        added = extend_vocabulary(out / "base-tokenizer", out, corpus_texts)
        tokenizer_source = str(out)
        print(f"vocabulary: {len(added)} characters added ({''.join(added[:20])}...)")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, use_fast=True)
    model, loading = AutoModelForMaskedLM.from_pretrained(config.base_model, output_loading_info=True)
    if added:
        model.resize_token_embeddings(len(tokenizer))
    head_initialised = any(not k.startswith(model.base_model_prefix) for k in loading["missing_keys"])
    if head_initialised and not config.head_warmup_steps:
        print("warning: the base model has no masked-LM head; 'before' perplexity uses an untrained head (see --head-warmup-steps)")

    encoder = TextEncoder(tokenizer.backend_tokenizer)
    train_chunks = chunk_texts(train_texts, encoder, config.max_length)
    held_chunks = chunk_texts(held_texts, encoder, config.max_length)
    special = set(tokenizer.all_special_ids)
    mask_id, pad_id, vocab_size = int(tokenizer.mask_token_id), int(tokenizer.pad_token_id or 0), len(tokenizer)
    fixed = np.random.default_rng(config.seed + 7)
    held_masked = [mask_words(c, config.mask_probability, mask_id, vocab_size, special, fixed) for c in held_chunks]
    print(f"{len(train_texts)} texts ({len(train_chunks)} windows) to adapt on, {len(held_texts)} held out ({len(held_chunks)} windows)")
    rng = np.random.default_rng(config.seed)
    record: dict[str, Any] = {
        "config": asdict(config),
        "texts": len(texts),
        "train_windows": len(train_chunks),
        "held_out_windows": len(held_chunks),
        "added_vocabulary": len(added),
        "head_initialised": head_initialised,
        "perplexity_as_loaded": perplexity(model, held_masked, pad_id, config.batch_size),
    }

    def run(steps: int, params: list[torch.nn.Parameter], lr: float, desc: str) -> float:
        model.train()
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
        scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
        started, done, tokens = time.perf_counter(), 0, 0
        bar = tqdm(total=steps, desc=desc, unit="batch", mininterval=5)
        while done < steps:
            for group in batches(train_chunks, config.batch_size, lambda c: len(c.input_ids), rng):
                batch = pad_labelled([mask_words(c, config.mask_probability, mask_id, vocab_size, special, rng) for c in group], pad_id)
                loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                done += 1
                tokens += int(batch["attention_mask"].sum())
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
                if done >= steps:
                    break
        bar.close()
        seconds = time.perf_counter() - started
        print(f"{desc}: {done} steps, {seconds:.0f} s, {tokens / seconds:.0f} tokens/s")
        return seconds

    if config.head_warmup_steps:
        for p in model.base_model.parameters():
            p.requires_grad_(False)
        head = [p for p in model.parameters() if p.requires_grad]
        record["head_warmup_seconds"] = run(config.head_warmup_steps, head, config.head_learning_rate, "masked-LM head warm-up")
        for p in model.base_model.parameters():
            p.requires_grad_(True)
    record["perplexity_before"] = perplexity(model, held_masked, pad_id, config.batch_size)
    print(f"held-out masked-LM perplexity before adaptation: {record['perplexity_before']:.2f}")
    steps = config.max_steps or config.epochs * math.ceil(len(train_chunks) / config.batch_size)
    record["adapt_steps"] = steps
    record["adapt_seconds"] = run(steps, list(model.parameters()), config.learning_rate, "domain adaptation")
    record["perplexity_after"] = perplexity(model, held_masked, pad_id, config.batch_size)
    print(f"held-out masked-LM perplexity after adaptation: {record['perplexity_after']:.2f}")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "pretrain.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
    return record
