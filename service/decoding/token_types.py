"""What a model's ``token_type_ids`` carry: nothing, or whether a subword was written in upper case.

The shipped encoders are uncased: their tokenizer lowercases, so ``IL-2`` and ``il-2``, or the cell
line ``Jurkat`` and a word ``jurkat``, reach the network as the same ids. Case is a strong cue for
names in biomedical text, and BERT's two token types (sentence A and B, unused by a tagger that
reads one text) give it a free channel: with ``TokenTypes.CASE`` a subword whose characters include
an upper-case letter has type 1, every other subword and the special tokens type 0.

The type travels packed into the id, above bit 32 (ids of any vocabulary fit below it). A window
row is then still one int64 array, and planning, the micro-batcher, padding and training's
collation carry it unchanged; only what feeds a model splits it (:func:`unpack`), so a path that
forgets to is loud (an id out of the embedding's range), never silently uncased.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

TYPE_SHIFT = 32
ID_MASK = (1 << TYPE_SHIFT) - 1


class TokenTypes(str, Enum):
    """What ``token_type_ids`` carry; a bundle's ``serving.json`` says which its model was trained on."""

    NONE = "none"  # all zeros, as a single-sequence BERT input
    CASE = "case"  # 1 where the subword's characters include an upper-case letter


def case_flags(text: str, offsets: np.ndarray) -> np.ndarray:
    """1 for each ``(start, end)`` character span of ``text`` holding an upper-case letter, else 0.

    A character counts as upper case when lowercasing changes it (titlecase letters too), which is
    exactly the information the uncased tokenizer drops."""
    if not len(offsets):
        return np.zeros(0, dtype=np.int64)
    lowered = text.lower()
    if len(lowered) == len(text):
        a = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        b = np.frombuffer(lowered.encode("utf-32-le"), dtype=np.uint32)
        upper = a != b
    else:  # a few letters lowercase to two characters (İ): compare one by one
        upper = np.fromiter((c.lower() != c for c in text), dtype=bool, count=len(text))
    counts = np.concatenate([[0], np.cumsum(upper, dtype=np.int64)])
    flags: np.ndarray = (counts[offsets[:, 1]] > counts[offsets[:, 0]]).astype(np.int64)
    return flags


def pack(ids: np.ndarray, types: np.ndarray) -> np.ndarray:
    packed: np.ndarray = ids | (types.astype(np.int64) << TYPE_SHIFT)
    return packed


def unpack(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, token_type_ids)`` of packed ids (of any shape)."""
    return ids & ID_MASK, ids >> TYPE_SHIFT


def strip(ids: np.ndarray) -> np.ndarray:
    """The ids alone, for a model trained without token types (a teacher of a cased student)."""
    return ids & ID_MASK
