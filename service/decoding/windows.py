"""Tokenise with offsets, cut long texts into overlapping windows, stitch predictions back.

A window holds ``max_length`` tokens including the model's special tokens, so its content is
``max_length - n_special`` subwords. ``stride`` is the *overlap* between consecutive windows (the
transformers meaning of the word). Each token's prediction is taken from the window in which it
sits furthest from an edge, so every token sees at least ``stride // 2`` tokens of context on
each side that has any, and a long text is tagged as well as a short one.

With ``align=sentences`` a window ends where a sentence starts whenever one falls in its second
half, and the next window starts there without overlap: a sentence end is a cut that loses little
context, so the overlap (a third of the model's work on abstracts at 128/32) is paid only where a
window must cut inside a sentence.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from service.decoding.token_types import TokenTypes, case_flags, pack


@dataclass(frozen=True)
class Encoded:
    """One text's subwords: ids, character offsets into the text and pre-tokenizer word ids."""

    ids: np.ndarray  # (n,) int64, with the token type packed in (service.decoding.token_types)
    offsets: np.ndarray  # (n, 2) int64, Python str indices, end exclusive
    word_ids: np.ndarray  # (n,) int64

    def __len__(self) -> int:
        return int(self.ids.shape[0])


class Align(str, Enum):
    """Where windows may end."""

    TOKENS = "tokens"  # every ``max_length - stride`` tokens, overlapping by ``stride``
    SENTENCES = "sentences"  # at a sentence start in the window's second half, else as TOKENS


@dataclass(frozen=True)
class WindowConfig:
    """Window length (special tokens included), overlap and alignment; the defaults every bundle
    falls back to."""

    max_length: int = 128
    stride: int = 32
    align: Align = Align.TOKENS

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

    def plan(self, n_tokens: int, n_special: int, sentence_starts: np.ndarray | None = None) -> list[WindowSpan]:
        """Windows over ``n_tokens``; ``sentence_starts`` (token indices) is used when aligned to sentences."""
        content = self.content_length(n_special)
        if self.align is Align.SENTENCES and sentence_starts is not None:
            return plan_sentence_windows(n_tokens, content, self.stride, sentence_starts)
        return plan_windows(n_tokens, content, self.stride)

    def plan_text(self, text: str, encoded: Encoded, n_special: int) -> list[WindowSpan]:
        """The windows of one encoded text, as both the service and training cut them. Sentence starts
        are looked for only when aligned to sentences and the text needs more than one window."""
        n = len(encoded)
        if not n:
            return []
        if self.align is Align.SENTENCES and n > self.content_length(n_special):
            return self.plan(n, n_special, sentence_starts(text, encoded))
        return self.plan(n, n_special)

    def max_windows(self, n_tokens: int, n_special: int) -> int:
        """An upper bound on ``len(plan(n_tokens, ...))`` whatever the sentences: admission's estimate."""
        if n_tokens <= 0:
            return 0
        content = self.content_length(n_special)
        if self.align is Align.TOKENS or n_tokens <= content:
            return len(plan_windows(n_tokens, content, self.stride))
        # An aligned window advances more than half a window, a cut one by ``content - stride``.
        advance = min(content // 2 + 1, content - self.stride)
        return -(-(n_tokens - content) // advance) + 1


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
    ``token_types`` is what the model reads as token types, packed into the ids it returns.
    """

    def __init__(self, tokenizer: Tokenizer, token_types: TokenTypes = TokenTypes.NONE) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.token_types = token_types
        self.prefix_ids, self.suffix_ids = _special_affixes(tokenizer)

    @classmethod
    def from_file(cls, path: str | Path, token_types: TokenTypes = TokenTypes.NONE) -> TextEncoder:
        return cls(Tokenizer.from_file(str(path)), token_types)

    def with_token_types(self, token_types: TokenTypes) -> TextEncoder:
        """The same tokenizer, marking ``token_types`` (itself when they are already these)."""
        if token_types is self.token_types:
            return self
        encoder = copy.copy(self)
        encoder.token_types = token_types
        return encoder

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def n_special(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)

    def encode_batch(self, texts: Sequence[str]) -> list[Encoded]:
        texts = list(texts)
        encodings = self._tokenizer.encode_batch(texts, add_special_tokens=False)
        return [self._to_encoded(e, text) for e, text in zip(encodings, texts)]

    def encode(self, text: str) -> Encoded:
        return self._to_encoded(self._tokenizer.encode(text, add_special_tokens=False), text)

    def _to_encoded(self, encoding: Encoding, text: str) -> Encoded:
        encoded = _to_encoded(encoding)
        if self.token_types is TokenTypes.CASE:
            return Encoded(pack(encoded.ids, case_flags(text, encoded.offsets)), encoded.offsets, encoded.word_ids)
        return encoded

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


def plan_sentence_windows(n_tokens: int, content_length: int, stride: int, sentence_starts: np.ndarray) -> list[WindowSpan]:
    """Cover ``n_tokens`` with windows that end at a sentence start when one lies in the second
    half of the window (no overlap with the next), else cut at full length and overlap by ``stride``.
    The last window ends at the text's end and is as short as it needs to be."""
    WindowConfig(content_length, stride).validate(0)
    starts = np.asarray(sentence_starts, dtype=np.int64)
    spans: list[WindowSpan] = []
    start = 0
    while n_tokens - start > content_length:
        limit = start + content_length
        inside = starts[(starts > start + content_length // 2) & (starts <= limit)]
        if inside.size:
            end = int(inside[-1])
            spans.append(WindowSpan(start, end))
            start = end
        else:
            spans.append(WindowSpan(start, limit))
            start = limit - stride
    spans.append(WindowSpan(start, n_tokens))
    return spans


_TERMINAL_CODES = np.array([ord(c) for c in ".!?"], dtype=np.uint32)
# Tokens that end with a full stop without ending a sentence in biomedical prose.
_ABBREVIATIONS = frozenset({"al", "e", "g", "i", "fig", "figs", "vs", "ref", "refs", "no", "approx", "ca", "cf", "resp", "eq", "dr", "st"})


def sentence_starts(text: str, encoded: Encoded) -> np.ndarray:
    """Token indices that begin a sentence: after a one-character ``.``, ``!`` or ``?`` token and
    white space, at an upper-case letter, a digit or an opening bracket, not after a common
    abbreviation. A heuristic for where to cut windows, not a linguistic sentence splitter: a wrong
    guess costs a little context at one window edge, never an entity. Vectorised: only the few
    candidates are looked at in Python."""
    n = len(encoded)
    if n < 3:
        return np.zeros(0, dtype=np.int64)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # one code point per str index
    starts, ends = encoded.offsets[:, 0], encoded.offsets[:, 1]
    prev = np.arange(1, n - 1)  # the terminal's token; the candidate is prev + 1, with a token before prev
    one_char = ends[prev] - starts[prev] == 1
    terminal = np.isin(codes[np.minimum(starts[prev], len(codes) - 1)], _TERMINAL_CODES)
    spaced = starts[prev + 1] > ends[prev]
    found: list[int] = []
    for i in (prev[one_char & terminal & spaced] + 1).tolist():
        head = text[int(starts[i])]
        if not (head.isupper() or head.isdigit() or head in "(["):
            continue
        if text[int(starts[i - 2]) : int(ends[i - 2])].lower() in _ABBREVIATIONS:
            continue
        found.append(i)
    return np.asarray(found, dtype=np.int64)


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
