"""A batch function whose batches the test lets finish one by one: for the micro-batcher's lanes,
which run several batches at once (``tests/service/test_batching.py``, ``test_admission.py``)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np


class Keyed:
    """A batch function that blocks each batch on the gate of its first key, so the test decides
    when each of several concurrent batches finishes; ``entered`` counts batches in flight."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.gates: dict[int, threading.Event] = {}
        self.entered: asyncio.Queue[list[int]] = asyncio.Queue()
        self.fail_on = fail_on
        self._loop = asyncio.get_running_loop()

    def gate(self, key: int) -> threading.Event:
        return self.gates.setdefault(key, threading.Event())

    def __call__(self, rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        keys = [int(r[0]) for r in rows]
        self._loop.call_soon_threadsafe(self.entered.put_nowait, keys)
        self.gate(keys[0]).wait(10)  # a guard against a test that never opens it, not a timing
        if self.fail_on in keys:
            raise RuntimeError("boom")
        return [np.full((len(r), 2), float(r[0])) for r in rows]

    async def running(self, n: int) -> list[list[int]]:
        """The next ``n`` batches to enter, once all of them are inside the batch function."""
        return [await asyncio.wait_for(self.entered.get(), 10) for _ in range(n)]
