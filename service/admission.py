"""Deadline-aware admission: admit a request only if the queue can finish it, and everything
already admitted, before the tightest deadline among them.

The drain rate is measured, not configured: window tokens (real tokens, special tokens included)
and seconds of inference, each an exponentially weighted mean over recent batches, and their
ratio, so padding and batch size are priced in and the estimate follows the machine (the same
queue bound drains in 14 s on one CPU and 35 s on another). Smoothing the two apart, not the
per-batch rates, keeps a batch with a tiny interval (two lanes finishing together) from
dominating the estimate. Before the first batch the estimate is the
conservative ``initial_tokens_per_s`` (or what the warm-up batch measured).

Under round-robin scheduling a request's windows interleave with everyone's, so the one bound
that holds for every admitted request is the whole queue's drain time: admitting new work is
safe while ``(queued tokens + new tokens) / rate`` fits before the earliest deadline in the
queue, the newcomer's included. Otherwise the newcomer gets 503 at once, with ``Retry-After``
the time until that would fit, instead of a 504 after waiting out its deadline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class DrainRate:
    """Tokens per second of inference, smoothed over recent batches."""

    tokens_per_s: float
    weight: float = 0.2  # share of the newest batch: about the last 10 batches count
    batches: int = 0
    _tokens: float = 0.0
    _seconds: float = 0.0

    def observe(self, tokens: int, seconds: float) -> None:
        """``seconds`` may be 0: a batch that finished with another lane's adds its tokens to
        the same stretch of busy time."""
        if tokens <= 0 or seconds < 0:
            return
        # The first real batches replace the conservative default rather than average with it.
        weight = 1.0 if self.batches == 0 else max(self.weight, 1.0 / (self.batches + 1))
        self._tokens += weight * (tokens - self._tokens)
        self._seconds += weight * (seconds - self._seconds)
        self.batches += 1
        if self._seconds > 0:
            self.tokens_per_s = self._tokens / self._seconds

    def seconds_for(self, tokens: int) -> float:
        return tokens / self.tokens_per_s


@dataclass(frozen=True)
class Verdict:
    admit: bool
    estimate_s: float  # drain time of the queue with this request in it
    retry_after_s: int  # when refused: roughly when it would fit


def judge(queued_tokens: int, new_tokens: int, earliest_deadline_in: float, rate: DrainRate, headroom: float = 1.0) -> Verdict:
    """Admit when the queue, this request included, drains before ``headroom`` x the time left to
    the earliest deadline (below 1: room for the machine to slow down after admitting)."""
    estimate = rate.seconds_for(queued_tokens + new_tokens)
    budget = headroom * earliest_deadline_in
    if estimate <= budget:
        return Verdict(True, estimate, 0)
    return Verdict(False, estimate, max(1, math.ceil((estimate - budget) / headroom)))
