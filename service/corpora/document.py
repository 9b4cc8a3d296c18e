"""The one record every reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str


@dataclass(frozen=True)
class Document:
    """Raw text with character-offset entities; ``tokens`` keeps the source words of column files.

    Column files are joined into text (tokens separated by ``separator``) so that training and
    evaluation see the same tokenizer path as the service; ``token_offsets`` maps back to the
    original tokens for seqeval's word-level scoring.
    """

    id: str
    text: str
    spans: tuple[Span, ...]
    token_offsets: tuple[tuple[int, int], ...] = field(default=())
