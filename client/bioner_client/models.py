"""Typed results: frozen dataclasses built from the service's JSON, never dicts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Alternative:
    label: str
    score: float


@dataclass(frozen=True)
class Entity:
    """``text == sent[start:end]`` for the exact string sent (Python ``str`` indices)."""

    start: int
    end: int
    text: str
    label: str
    score: float
    source: str | None = None  # the head (training corpus) that found it; the model name on one-head models
    alternatives: tuple[Alternative, ...] = ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entity:
        return cls(
            start=int(data["start"]),
            end=int(data["end"]),
            text=str(data["text"]),
            label=str(data["label"]),
            score=float(data["score"]),
            source=data.get("source"),
            alternatives=tuple(Alternative(str(a["label"]), float(a["score"])) for a in data.get("alternatives", ())),
        )


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class Recognition:
    """One text's entities, the model that found them and the request id that carried them."""

    entities: tuple[Entity, ...]
    model: ModelRef
    request_id: str


@dataclass(frozen=True)
class Limits:
    """What one request may hold (the server's ``GET /model``), used to chunk ``recognize_many``."""

    max_texts_per_request: int = 64
    max_text_chars: int = 100_000
    max_request_windows: int = 1_064
    max_queue_windows: int = 2_048
    window_tokens: int = 128
    overlap_tokens: int = 32

    @classmethod
    def from_model_info(cls, info: dict[str, Any]) -> Limits:
        limits = info.get("limits") or {}
        return cls(
            max_texts_per_request=int(limits.get("max_texts_per_request", cls.max_texts_per_request)),
            max_text_chars=int(limits.get("max_text_chars", cls.max_text_chars)),
            max_request_windows=int(limits.get("max_request_windows", cls.max_request_windows)),
            max_queue_windows=int(limits.get("max_queue_windows", cls.max_queue_windows)),
            window_tokens=int(info.get("max_length", cls.window_tokens)),
            overlap_tokens=int(info.get("stride", cls.overlap_tokens)),
        )

    def windows_bound(self, chars: int) -> int:
        """The server's own bound: a subword covers at least one character (two special tokens assumed)."""
        if chars == 0:
            return 0
        content = self.window_tokens - 2
        if chars <= content:
            return 1
        step = content - self.overlap_tokens
        return -(-(chars - content) // step) + 1

    def chunks(self, texts: list[str], concurrency: int = 1) -> list[range]:
        """Consecutive index ranges, each within the text count and a window budget small enough
        that ``concurrency`` chunks in flight fit the server's queue together."""
        budget = max(1, min(self.max_request_windows, self.max_queue_windows // max(concurrency, 1)))
        out: list[range] = []
        start, windows = 0, 0
        for i, text in enumerate(texts):
            need = self.windows_bound(len(text))
            if i > start and (i - start >= self.max_texts_per_request or windows + need > budget):
                out.append(range(start, i))
                start, windows = i, 0
            windows += need
        if start < len(texts):
            out.append(range(start, len(texts)))
        return out
