"""One type per name within a text: later mentions take the type of the first.

An abstract defines a name once, in full context ("the BZLF1 gene promoter (Zp)", "phospholipase D
(PLD)"), and then uses the bare name, where the network has only the name to go on and guesses.
JNLPBA's gold gives a name one type within an abstract in 3,470 of 3,477 cases, so the first mention's
type is the better guess for the rest (README, "One type per name", measured on the 200 dev abstracts).

It retypes the decoded word spans themselves, so no boundary can move: a retyped mention is the same
span with another type. Its alternatives are the other types' probabilities in its own context (the
type it had among them). Its score is its first mention's: the type was decided there, and so was the
confidence in it (its own probability of the new type is low by construction: its context chose another).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from enum import Enum

import numpy as np

from service.decoding.aggregate import Entity, Words, span_text

Span = tuple[int, int, str]  # first word, last word (exclusive), type


class Consistency(str, Enum):
    """Whether mentions of one name in a text share a type."""

    NONE = "none"  # every mention typed by its own context
    FIRST_MENTION = "first_mention"  # every mention of a name takes the type of its first mention


def first_mention_types(text: str, offsets: np.ndarray, words: Words, spans: Sequence[Span]) -> tuple[list[Span], list[int | None]]:
    """``spans`` with each one retyped to the type of the first span of the same name (its exact
    characters, at least one of them a letter or digit) before it, and for each span the index of the
    span that decided its type (``None``: its own)."""
    first: dict[str, int] = {}
    out: list[Span] = []
    decided_by: list[int | None] = []
    for k, (start, last, kind) in enumerate(spans):
        name = span_text(text, offsets, words, start, last)
        if name is None or not any(c.isalnum() for c in name):
            out.append((start, last, kind))
            decided_by.append(None)
            continue
        decider = first.setdefault(name, k)
        decided = kind if decider == k else out[decider][2]
        out.append((start, last, decided))
        decided_by.append(decider if decided != kind else None)
    return out, decided_by


def first_mention_across(passages: Sequence[Sequence[Entity]]) -> list[list[Entity]]:
    """One document's passages' entities, in reading order (title, abstract, sections), each passage
    already consistent within itself: a name's first mention in an earlier passage decides its type,
    and its score, in the later ones, head by head. Passages are decoded one by one, so this is done on
    entities; a retyped mention's alternatives, if asked for, trade the new type for the one it had,
    at the score it had (the mean probability of its own tags, close to that type's mass)."""
    first: dict[tuple[str, str], Entity] = {}
    out: list[list[Entity]] = []
    for entities in passages:
        kept: list[Entity] = []
        for entity in entities:
            decided = first.setdefault((entity.source, entity.text), entity)
            if decided.label != entity.label and any(c.isalnum() for c in entity.text):
                alternatives = entity.alternatives
                if alternatives:
                    others = [(label, p) for label, p in alternatives if label != decided.label] + [(entity.label, entity.score)]
                    alternatives = tuple(sorted(others, key=lambda item: -item[1])[: len(alternatives)])
                entity = replace(entity, label=decided.label, score=decided.score, alternatives=alternatives)
            kept.append(entity)
        out.append(kept)
    return out


def first_mention_documents(passages_per_document: Sequence[int], found: Sequence[Sequence[Entity]]) -> list[list[Entity]]:
    """:func:`first_mention_across` for every document of a collection, given how many passages each
    has; ``found`` holds every passage's entities in collection order."""
    out: list[list[Entity]] = []
    cursor = 0
    for n in passages_per_document:
        out.extend(first_mention_across(found[cursor : cursor + n]))
        cursor += n
    return out
