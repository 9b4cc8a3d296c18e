"""Linear-chain CRF transition scores, as a bundle carries them in ``serving.json``.

Training (``bioner train --head crf``) learns them over word-level emissions: the logits of
each word's first subword (label policy ``first``). The service decodes on the same word-level
scores (aggregation ``first``), with one Viterbi pass over the whole stitched text, so a span
that crosses a window boundary is decoded exactly as one inside a window. Viterbi runs on
log-softmax scores: they differ from the raw emissions by one constant per word, which leaves
the best path unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

CRF_KEY = "crf"
# Forbidden moves are stored as this score (JSON has no -inf); decoding forbids them outright.
FORBIDDEN = -10000.0


@dataclass(frozen=True)
class Transitions:
    matrix: np.ndarray  # (L, L): score of label j following label i
    start: np.ndarray  # (L,): score of a text opening with label j
    end: np.ndarray  # (L,): score of a text closing with label i

    def __post_init__(self) -> None:
        n = self.matrix.shape[0]
        if self.matrix.shape != (n, n) or self.start.shape != (n,) or self.end.shape != (n,):
            raise ValueError(f"CRF shapes disagree: transitions {self.matrix.shape}, start {self.start.shape}, end {self.end.shape}")
        if not all(np.isfinite(a).all() for a in (self.matrix, self.start, self.end)):
            raise ValueError("CRF scores must be finite numbers")

    def __len__(self) -> int:
        return int(self.matrix.shape[0])

    @classmethod
    def from_json(cls, data: Any) -> Transitions:
        if not isinstance(data, dict) or not {"transitions", "start", "end"} <= data.keys():
            raise ValueError("'crf' must be an object with 'transitions', 'start' and 'end'")
        try:
            arrays = [np.asarray(data[k], dtype=np.float64) for k in ("transitions", "start", "end")]
        except (TypeError, ValueError) as exc:
            raise ValueError(f"'crf' scores are not numbers: {exc}") from exc
        return cls(*arrays)

    def tempered(self, temperature: float) -> Transitions:
        """The scores divided by ``T``: with the emissions divided too, the CRF's distribution is
        tempered (flatter for ``T`` > 1) while its best path stays the same."""
        return Transitions(self.matrix / temperature, self.start / temperature, self.end / temperature)

    def to_json(self) -> dict[str, Any]:
        return {"transitions": self.matrix.tolist(), "start": self.start.tolist(), "end": self.end.tolist()}
