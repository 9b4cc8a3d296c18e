"""One type per name within a text: later mentions take the type of the first.

An abstract defines a name once, in full context ("the BZLF1 gene promoter (Zp)", "phospholipase D
(PLD)"), and then uses the bare name, where the network has only the name to go on and guesses.
JNLPBA's gold gives a name one type within an abstract in 3,470 of 3,477 cases, so the first mention's
type is the better guess for the rest (README, "One type per name", measured on the 200 dev abstracts).

It works on the word labels, before spans become entities, so a retyped mention keeps its boundaries
and its alternatives are the other types' probabilities in its own context (the type it had among them).
Its score is its first mention's: the type was decided there, and so was the confidence in it. (Its own
probability of the new type is low by construction: its context alone chose another.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import Enum

import numpy as np

from service.decoding.aggregate import Entity, Words, decode_tags, span_text
from service.decoding.labels import LabelScheme


class Consistency(str, Enum):
    """Whether mentions of one name in a text share a type."""

    NONE = "none"  # every mention typed by its own context
    FIRST_MENTION = "first_mention"  # every mention of a name takes the type of its first mention


def first_mention_types(text: str, offsets: np.ndarray, words: Words, labels: np.ndarray, scheme: LabelScheme) -> np.ndarray:
    """``labels`` (one class id per word) with each span retyped to the type of the first span of the
    same text (exact characters) before it; spans keep their boundaries and their tags' prefixes.
    A span whose prefixes do not exist for the new type (a scheme without them) keeps its type."""
    ids = labels.tolist()
    spans = decode_tags([scheme.prefixes[c] for c in ids], [scheme.types[c] for c in ids])
    if len(spans) < 2:
        return labels
    by_tag = {(p, t): k for k, (p, t) in enumerate(zip(scheme.prefixes, scheme.types))}
    first_type: dict[str, str] = {}
    out = labels
    for first, last, kind in spans:
        name = span_text(text, offsets, words, first, last)
        if name is None:
            continue
        decided = first_type.setdefault(name, kind)
        if decided == kind:
            continue
        retyped = [by_tag.get((scheme.prefixes[c], decided)) for c in ids[first:last]]
        if None in retyped:
            continue
        if out is labels:
            out = labels.copy()
        out[first:last] = retyped
    return out


def inherit_scores(own: Sequence[Entity], retyped: Sequence[Entity]) -> list[Entity]:
    """``retyped`` (the entities of :func:`first_mention_types`'s labels) with each retyped mention
    scored as its first mention. ``own`` are the same spans under the labels before retyping: the
    boundaries do not move, so the two lists pair up one to one."""
    first: dict[str, Entity] = {}
    out = []
    for before, after in zip(own, retyped, strict=True):
        decided = first.setdefault(after.text, after)
        out.append(replace(after, score=decided.score) if after.label != before.label else after)
    return out
