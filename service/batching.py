"""MicroBatcher: an asyncio queue of token windows in front of one inference worker thread.

Contract (tested in ``tests/unit/test_batching.py``):
- every submitted future resolves exactly once (result, exception, or cancelled by its owner);
- a failing batch fails only its own futures, and the worker keeps serving;
- the number of results is checked against the batch size;
- cancelled items (client gone) and expired items (deadline passed) are skipped before they run;
- the wait timer starts at the oldest waiting item, not at the last arrival;
- admission is all-or-nothing per request and bounded: a full queue refuses at once.

Batches are formed when ``max_batch_size`` windows or ``max_batch_tokens`` padded tokens are
waiting, or when the oldest has waited ``max_wait_ms``. The oldest item always goes into the
next batch (no starvation); its batch-mates are the waiting items closest to it in length, so
padding stays small.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.errors import DeadlineExceededError, InferenceError, QueueFullError, RequestTooLargeError, ShuttingDownError

log = logging.getLogger(__name__)

# Runs in the worker thread: a list of id rows -> one logits array per row (rows, labels).
BatchFn = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class BatchStats:
    rows: int
    padded_tokens: int
    real_tokens: int
    seconds: float


@dataclass(frozen=True)
class WindowResult:
    logits: np.ndarray
    queued_s: float
    inference_s: float
    batch: int  # sequence number of the batch the window ran in


@dataclass
class _Item:
    ids: np.ndarray
    future: asyncio.Future[WindowResult]
    enqueued: float
    deadline: float
    seq: int = field(default=0)


@dataclass
class BatcherHooks:
    """Observability callbacks, so the batcher does not import the metrics module."""

    on_batch: Callable[[BatchStats], None] = lambda stats: None
    on_drop: Callable[[str, int], None] = lambda reason, n: None
    on_queue_depth: Callable[[int], None] = lambda depth: None


class MicroBatcher:
    def __init__(
        self,
        batch_fn: BatchFn,
        max_batch_size: int = 8,
        max_batch_tokens: int = 4096,
        max_wait_s: float = 0.002,
        max_queue: int = 1024,
        hooks: BatcherHooks | None = None,
    ) -> None:
        self._batch_fn = batch_fn
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._hooks = hooks or BatcherHooks()
        self._pending: list[_Item] = []
        self._seq = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._closing = False
        self._batches = 0

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the loop-bound objects; call from inside the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._worker(), name="micro-batcher")

    async def drain(self) -> None:
        """Stop accepting, finish everything queued, then stop the worker."""
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # -- admission -------------------------------------------------------------------------
    def submit(self, windows: Sequence[np.ndarray], deadline: float) -> list[asyncio.Future[WindowResult]]:
        """Queue one request's windows together, or refuse them all."""
        if self._closing or not self.running:
            raise ShuttingDownError("the service is shutting down")
        if len(windows) > self.max_queue:
            self._hooks.on_drop("too_large", len(windows))
            raise RequestTooLargeError(
                f"the request needs {len(windows)} windows; the queue holds {self.max_queue}: send less text per request"
            )
        if len(self._pending) + len(windows) > self.max_queue:
            self._hooks.on_drop("queue_full", len(windows))
            raise QueueFullError(f"queue full ({len(self._pending)} windows waiting)")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures = []
        for ids in windows:
            self._seq += 1
            item = _Item(ids, loop.create_future(), now, deadline, self._seq)
            self._pending.append(item)
            futures.append(item.future)
        self._hooks.on_queue_depth(len(self._pending))
        assert self._wakeup is not None
        self._wakeup.set()
        return futures

    # -- worker ----------------------------------------------------------------------------
    async def _worker(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while True:
            self._discard_dead()
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            remaining = self._pending[0].enqueued + self.max_wait_s - time.monotonic()
            if remaining > 0 and not self._batch_ready() and not self._closing:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
                except TimeoutError:
                    pass
                continue
            batch = self._take_batch()
            if batch:
                await self._run(loop, batch)

    def _batch_ready(self) -> bool:
        if len(self._pending) >= self.max_batch_size:
            return True
        longest = max(len(i.ids) for i in self._pending)
        return longest * len(self._pending) >= self.max_batch_tokens

    def _discard_dead(self) -> None:
        """Drop items whose owner went away, and fail those whose deadline passed."""
        now = time.monotonic()
        alive = []
        cancelled = expired = 0
        for item in self._pending:
            if item.future.done():
                cancelled += 1
            elif item.deadline <= now:
                item.future.set_exception(DeadlineExceededError("deadline passed while queued"))
                expired += 1
            else:
                alive.append(item)
        if cancelled:
            self._hooks.on_drop("cancelled", cancelled)
        if expired:
            self._hooks.on_drop("deadline", expired)
        if cancelled or expired:
            self._pending = alive
            self._hooks.on_queue_depth(len(alive))

    def _take_batch(self) -> list[_Item]:
        """The oldest item plus the waiting items nearest to it in length, within both limits."""
        oldest = self._pending[0]
        anchor = len(oldest.ids)
        by_closeness = sorted(self._pending[1:], key=lambda i: (abs(len(i.ids) - anchor), i.seq))
        chosen, longest = [oldest], anchor
        for item in by_closeness:
            if len(chosen) >= self.max_batch_size:
                break
            width = max(longest, len(item.ids))
            if width * (len(chosen) + 1) > self.max_batch_tokens:
                continue
            chosen.append(item)
            longest = width
        taken = {id(i) for i in chosen}
        self._pending = [i for i in self._pending if id(i) not in taken]
        self._hooks.on_queue_depth(len(self._pending))
        return chosen

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[_Item]) -> None:
        started = time.monotonic()
        try:
            outputs = await loop.run_in_executor(self._executor, self._batch_fn, [i.ids for i in batch])
            if len(outputs) != len(batch):
                raise InferenceError(f"engine returned {len(outputs)} results for {len(batch)} windows")
        except Exception as exc:  # one failed batch fails only its own requests
            log.error("inference batch of %d windows failed: %s", len(batch), exc, exc_info=True)
            error = exc if isinstance(exc, InferenceError) else InferenceError(str(exc))
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            self._hooks.on_drop("inference_error", len(batch))
            return
        finished = time.monotonic()
        self._batches += 1
        real = sum(len(i.ids) for i in batch)
        self._hooks.on_batch(BatchStats(len(batch), max(len(i.ids) for i in batch) * len(batch), real, finished - started))
        for item, logits in zip(batch, outputs):
            if not item.future.done():  # the owner may have gone while the batch ran
                item.future.set_result(WindowResult(logits, started - item.enqueued, finished - started, self._batches))
