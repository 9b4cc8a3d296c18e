"""When to try again, and how long to wait: the one policy both clients share.

Retried: 503 (overloaded, deadline_unmeetable, draining: the server says when, in Retry-After,
and the client never comes back earlier), 502 and 504, and transport errors (a server restarting refuses connections for a moment). Never
retried: 4xx (the request is wrong) and 500 (inference failed: the same input would fail again).
``POST /ner`` changes nothing on the server, so a retry is always safe.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx

RETRY_STATUSES = frozenset({502, 503, 504})  # 502: a proxy in front of a restarting server


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 10  # tries in all, the first included
    backoff_s: float = 0.25  # first wait without a Retry-After; doubles each time
    max_backoff_s: float = 10.0
    jitter: float = 0.2  # +-20%: clients refused together do not come back together

    def delay(self, attempt: int, retry_after_s: float | None) -> float:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 1)."""
        if retry_after_s is not None:  # the server said when: never earlier, spread a little later
            return retry_after_s * (1 + random.uniform(0, self.jitter))
        base = min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))

    def should_retry(self, attempt: int, response: httpx.Response | None, error: Exception | None) -> bool:
        if attempt >= self.attempts:
            return False
        if error is not None:
            return isinstance(error, httpx.TransportError)
        return response is not None and response.status_code in RETRY_STATUSES
