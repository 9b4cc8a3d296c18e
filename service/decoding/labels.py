"""Label schemes: split ``B-protein`` style labels into a prefix and an entity type."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

OUTSIDE = "O"
# Prefixes that open, continue, close or are a whole entity, across IOB1/IOB2/IO/BIOES/BILOU.
BEGIN, INSIDE, END, SINGLE = "B", "I", "E", "S"
_PREFIX_ALIASES = {"B": BEGIN, "I": INSIDE, "M": INSIDE, "E": END, "L": END, "S": SINGLE, "U": SINGLE}


def split_label(label: str) -> tuple[str, str]:
    """Return ``(prefix, type)``; ``("O", "")`` for the outside label.

    A label without a recognised prefix (``protein``) is read as ``I-protein`` so IO-style
    label sets with bare types still decode.
    """
    if label == OUTSIDE or label == "":
        return OUTSIDE, ""
    head, sep, tail = label.partition("-")
    if sep and head.upper() in _PREFIX_ALIASES and tail:
        return _PREFIX_ALIASES[head.upper()], tail
    return INSIDE, label


@dataclass(frozen=True)
class LabelScheme:
    """The model's ``id2label`` in decoded form, indexed by class id."""

    labels: tuple[str, ...]
    prefixes: tuple[str, ...]
    types: tuple[str, ...]

    @classmethod
    def from_id2label(cls, id2label: Mapping[int, str] | Mapping[str, str]) -> LabelScheme:
        by_id = {int(k): v for k, v in id2label.items()}  # JSON keys are strings, transformers' are ints
        ordered = [by_id[k] for k in sorted(by_id)]
        if sorted(by_id) != list(range(len(ordered))):
            raise ValueError("id2label ids must be 0..n-1 without gaps")
        parts = [split_label(label) for label in ordered]
        return cls(tuple(ordered), tuple(p for p, _ in parts), tuple(t for _, t in parts))

    @property
    def entity_types(self) -> tuple[str, ...]:
        """Entity types in first-seen order, without prefixes."""
        return tuple(dict.fromkeys(t for t in self.types if t))

    def __len__(self) -> int:
        return len(self.labels)
