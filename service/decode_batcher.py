"""Requests whose inference is done wait here, and are decoded together.

Decoding a text (Viterbi, CRF marginals, spans) is a recursion over its words: alone, one numpy
call after another for each word. The micro-batcher hands back a whole inference batch at once,
so the requests it served become ready together; decoding them in one ``finish_many`` call runs
their recursions side by side (``service.decoding.paths``), one step per word of the longest
text instead of one per word of every text. Each request still gets exactly the answer it
would get alone (the pipeline's tests hold that bit for bit).

The contract, as the micro-batcher's:
- every submitted request's future resolves exactly once (result, error or cancellation);
- a request cancelled while it waits is skipped before the work runs;
- one request whose decoding raises fails alone: the batch is retried one request at a time,
  so its batch-mates still get their answers;
- the worker runs only while something waits, so there is nothing to start or stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Job = TypeVar("Job")
Result = TypeVar("Result")
T = TypeVar("T")

# (small enough to stay on the event loop, the work) -> its result, on the loop or off it
Offload = Callable[[bool, Callable[[], T]], Awaitable[T]]


class DecodeBatcher(Generic[Job, Result]):
    def __init__(
        self,
        finish_many: Callable[[Sequence[Job]], list[Result]],
        offload: Offload[list[Result]],
        is_small: Callable[[Sequence[Job]], bool],
        max_jobs: int = 64,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        """``on_batch(requests, seconds)`` is told of every decode call that succeeded (metrics)."""
        if max_jobs < 1:
            raise ValueError("max_jobs must be at least 1")
        self._finish_many = finish_many
        self._offload = offload
        self._is_small = is_small
        self.max_jobs = max_jobs
        self._on_batch = on_batch
        self._waiting: list[tuple[Job, asyncio.Future[Result]]] = []
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # decode calls made, for tests and metrics

    @property
    def depth(self) -> int:
        return len(self._waiting)

    async def submit(self, job: Job) -> Result:
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, future))
        if self._worker is None or self._worker.done():
            # Created now, it first runs after the requests woken with this one have queued too.
            self._worker = asyncio.create_task(self._work())
        return await future

    async def _work(self) -> None:
        live: list[tuple[Job, asyncio.Future[Result]]] = []
        try:
            while self._waiting:
                taken, self._waiting = self._waiting[: self.max_jobs], self._waiting[self.max_jobs :]
                live = [(job, future) for job, future in taken if not future.done()]
                if live:
                    await self._run(live)
        except BaseException as stopped:  # nobody is left waiting forever
            for _, future in live + self._waiting:
                if isinstance(stopped, asyncio.CancelledError):
                    future.cancel()  # the worker itself was cancelled: the loop is closing
                elif not future.done():
                    future.set_exception(RuntimeError(f"the decode worker stopped: {stopped!r}"))
            self._waiting = []
            raise

    async def _run(self, items: list[tuple[Job, asyncio.Future[Result]]]) -> None:
        jobs = [job for job, _ in items]
        self.batches += 1
        started = time.perf_counter()
        try:
            results = await self._offload(self._is_small(jobs), lambda: self._finish_many(jobs))
            if len(results) != len(jobs):
                raise RuntimeError(f"decoding returned {len(results)} results for {len(jobs)} requests")
        except Exception as error:
            if len(items) == 1:
                if not items[0][1].done():
                    items[0][1].set_exception(error)
                return
            for item in items:  # find the culprit: each request alone, so only it fails
                if not item[1].done():  # cancelled meanwhile: skipped, as before any work
                    await self._run([item])
            return
        for (_, future), result in zip(items, results):
            if not future.done():  # cancelled while it was being decoded
                future.set_result(result)
        if self._on_batch is not None:
            try:  # the answers are out already: a failing metrics hook must not touch them
                self._on_batch(len(jobs), time.perf_counter() - started)
            except Exception:
                log.exception("the decode batcher's on_batch hook failed")
