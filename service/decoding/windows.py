"""Tokenise with offsets, cut long texts into overlapping windows, stitch predictions back.

A window holds ``max_length`` tokens including the model's special tokens, so its content is
``max_length - n_special`` subwords. ``stride`` is the *overlap* between consecutive windows (the
transformers meaning of the word). Each token's prediction is taken from the window in which it
sits furthest from an edge, so every token sees at least ``stride // 2`` tokens of context on
each side that has any, and a long text is tagged as well as a short one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer


@dataclass(frozen=True)
class Encoded:
    """One text's subwords: ids, character offsets into the text and pre-tokenizer word ids."""

    ids: np.ndarray  # (n,) int64
    offsets: np.ndarray  # (n, 2) int64, Python str indices, end exclusive
    word_ids: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True)
class WindowConfig:
    """Window length (special tokens included) and overlap; the defaults every bundle falls back to."""

    max_length: int = 128
    stride: int = 32

    def content_length(self, n_special: int) -> int:
        return self.max_length - n_special

    def validate(self, n_special: int) -> None:
        """The one rule: windows hold content, and consecutive windows advance."""
        content = self.content_length(n_special)
        if content < 1:
            raise ValueError(f"windows of {self.max_length} tokens leave no room for content after {n_special} special tokens")
        if not 0 <= self.stride < content:
            raise ValueError(
                f"stride (overlap) must be in [0, {content}) for windows of {self.max_length} tokens "
                f"({n_special} of them special), got {self.stride}"
            )

    def plan(self, n_tokens: int, n_special: int) -> list[WindowSpan]:
        return plan_windows(n_tokens, self.content_length(n_special), self.stride)


DEFAULT_WINDOW = WindowConfig()


@dataclass(frozen=True)
class WindowSpan:
    """Token range ``[start, end)`` of a text covered by one window's content."""

    start: int
    end: int


class TextEncoder:
    """A fast tokenizer with truncation and padding off, plus the special tokens to wrap windows.

    ``tokenizer.json`` files often ship with truncation and padding enabled (the bundled MiniLM
    pads and truncates at 128), which would silently cut every abstract; both are disabled here.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.prefix_ids, self.suffix_ids = _special_affixes(tokenizer)

    @classmethod
    def from_file(cls, path: str | Path) -> TextEncoder:
        return cls(Tokenizer.from_file(str(path)))

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def n_special(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)

    def encode_batch(self, texts: Sequence[str]) -> list[Encoded]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [_to_encoded(e) for e in encodings]

    def encode(self, text: str) -> Encoded:
        return _to_encoded(self._tokenizer.encode(text, add_special_tokens=False))

    def window_ids(self, encoded: Encoded, span: WindowSpan) -> np.ndarray:
        """Input ids of one window: special prefix + content + special suffix."""
        content = encoded.ids[span.start : span.end]
        return np.concatenate([np.asarray(self.prefix_ids, np.int64), content, np.asarray(self.suffix_ids, np.int64)])


def _to_encoded(encoding: Encoding) -> Encoded:
    ids = np.asarray(encoding.ids, dtype=np.int64)
    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    words = [-1 if w is None else w for w in encoding.word_ids]
    return Encoded(ids, offsets, np.asarray(words, dtype=np.int64))


def _special_affixes(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """Find which special tokens the post-processor puts before and after a single sequence."""
    probe = tokenizer.encode("a", add_special_tokens=True)
    ids, mask = probe.ids, probe.special_tokens_mask
    first_content = next((i for i, m in enumerate(mask) if not m), len(ids))
    last_content = max((i for i, m in enumerate(mask) if not m), default=len(ids) - 1)
    return list(ids[:first_content]), list(ids[last_content + 1 :])


def plan_windows(n_tokens: int, content_length: int, stride: int) -> list[WindowSpan]:
    """Cover ``n_tokens`` with windows of ``content_length`` overlapping by ``stride`` tokens."""
    WindowConfig(content_length, stride).validate(0)
    if n_tokens <= content_length:
        return [WindowSpan(0, n_tokens)]
    step = content_length - stride
    starts = list(range(0, n_tokens - content_length, step))
    starts.append(n_tokens - content_length)  # last window ends exactly at the text's end
    return [WindowSpan(s, s + content_length) for s in starts]


def owner_windows(n_tokens: int, spans: Sequence[WindowSpan]) -> np.ndarray:
    """For each token, the index of the window where it is furthest from an edge."""
    owners = np.zeros(n_tokens, dtype=np.int64)
    best = np.full(n_tokens, -1, dtype=np.int64)
    positions = np.arange(n_tokens)
    for index, span in enumerate(spans):
        inside = (positions >= span.start) & (positions < span.end)
        # A text edge is not a window edge: tokens near it lose no context by the cut.
        left = np.where(span.start == 0, n_tokens, positions - span.start)
        right = np.where(span.end == n_tokens, n_tokens, span.end - 1 - positions)
        margin = np.where(inside, np.minimum(left, right), -1)
        better = margin > best
        owners[better] = index
        best[better] = margin[better]
    return owners


def stitch(n_tokens: int, spans: Sequence[WindowSpan], window_scores: Sequence[np.ndarray]) -> np.ndarray:
    """Join per-window content scores ``(len(span), n_labels)`` into ``(n_tokens, n_labels)``."""
    if len(spans) != len(window_scores):
        raise ValueError("one score array per window is required")
    if n_tokens == 0:
        width = window_scores[0].shape[-1] if window_scores else 0
        return np.zeros((0, width), dtype=np.float32)
    owners = owner_windows(n_tokens, spans)
    out = np.empty((n_tokens, window_scores[0].shape[-1]), dtype=window_scores[0].dtype)
    for index, (span, scores) in enumerate(zip(spans, window_scores)):
        if scores.shape[0] != span.end - span.start:
            raise ValueError(f"window {index}: {scores.shape[0]} rows for {span.end - span.start} tokens")
        mine = np.nonzero(owners == index)[0]
        out[mine] = scores[mine - span.start]
    return out
