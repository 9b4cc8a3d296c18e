"""Extend a WordPiece vocabulary with the characters a corpus needs and the base model lacks.

An English base model maps most CJK characters to ``[UNK]`` (all-MiniLM-L6-v2 knows about 292
of the 2,455 distinct characters in the Chinese patent corpus), so every unknown character
becomes one vocabulary entry, appended after the existing ids so that every known token keeps
its id and embedding. The tokenizer is edited in its ``tokenizer.json`` form, which keeps its
normaliser and pre-tokeniser (BERT's splits CJK characters into one word each). The caller
resizes the model's embeddings to the new size.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer

TOKENIZER_FILES = ("tokenizer_config.json", "special_tokens_map.json")


def unknown_characters(tokenizer: Tokenizer, texts: Iterable[str]) -> list[str]:
    """Characters of ``texts`` that the tokenizer turns into its unknown token, most frequent first."""
    counts = Counter(ch for text in texts for ch in text if not ch.isspace())
    model = json.loads(tokenizer.to_str())["model"]
    unk = model.get("unk_token", "[UNK]")
    unknown = []
    for ch, _ in counts.most_common():
        tokens = tokenizer.encode(ch, add_special_tokens=False).tokens
        if tokens == [unk]:
            unknown.append(ch)
    return unknown


def extend_vocabulary(source: Path, output: Path, texts: Iterable[str]) -> list[str]:
    """Write ``source``'s tokenizer with the missing characters appended into ``output``; returns them."""
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.no_truncation()  # a padded single character is never just "[UNK]" (the base ships padding at 128)
    tokenizer.no_padding()
    added = unknown_characters(tokenizer, texts)
    data = json.loads(tokenizer.to_str())
    if data["model"].get("type") != "WordPiece":
        raise ValueError(f"vocabulary extension supports WordPiece tokenizers, not {data['model'].get('type')}")
    vocab: dict[str, int] = data["model"]["vocab"]
    next_id = max(vocab.values()) + 1
    for ch in added:
        vocab[ch] = next_id
        next_id += 1
    output.mkdir(parents=True, exist_ok=True)
    Tokenizer.from_str(json.dumps(data)).save(str(output / "tokenizer.json"))
    ordered = sorted(vocab.items(), key=lambda item: item[1])
    if [i for _, i in ordered] != list(range(len(ordered))):
        raise ValueError("the vocabulary's ids are not contiguous; cannot write vocab.txt")
    (output / "vocab.txt").write_text("".join(token + "\n" for token, _ in ordered), encoding="utf-8")
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, output / name)
    return added
