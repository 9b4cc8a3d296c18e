"""A tiny random BERT and a tiny brat corpus, built on the spot (no download), for training tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "p53", "kinase", "binds", "myc", "gene", "in", "cells", ".", "##x"]


def make_base_model(folder: Path) -> Path:
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


def make_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(12):
        text = "the p53 kinase binds the myc gene in cells ." * (1 + i % 3)
        (folder / f"d{i}.txt").write_text(text, encoding="utf-8")
        anns, step = [], len("the p53 kinase binds the myc gene in cells .")
        for r in range(1 + i % 3):
            base = r * step
            anns.append(f"T{2 * r + 1}\tprotein {base + 4} {base + 14}\tp53 kinase")
            anns.append(f"T{2 * r + 2}\tDNA {base + 25} {base + 33}\tmyc gene")
        (folder / f"d{i}.ann").write_text("\n".join(anns) + "\n", encoding="utf-8")
    return folder


def export_bundle(checkpoint: Path, output: Path, *flags: str) -> int:
    """``bioner export`` through its CLI, so the tests get the defaults a user gets."""
    from train.cli import main

    return main(["export", "--checkpoint", str(checkpoint), "--output", str(output), *flags])


def tiny_train_config(base: Path, corpus: Path, output: Path, **overrides: Any) -> Any:
    """Settings under which the tiny model learns the tiny corpus in a few seconds."""
    from train.finetune import TrainConfig

    settings: dict[str, Any] = {"epochs": 1, "batch_size": 4, "learning_rate": 5e-3, "max_length": 24, "stride": 6}
    settings |= {"dev_fraction": 0.25, "dropout": 0.0, **overrides}
    return TrainConfig(train=[str(corpus)], output=str(output), base_model=str(base), **settings)
