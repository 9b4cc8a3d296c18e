"""A tiny random BERT and a tiny brat corpus, built on the spot (no download), for training tests."""

from __future__ import annotations

from pathlib import Path

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
