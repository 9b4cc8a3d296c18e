"""MicroBatcher: an asyncio queue of token windows in front of one or more inference lanes.

Contract (tested in ``tests/service/test_batching.py``):
- every submitted future resolves exactly once (result, exception, or cancelled by its owner);
- a failing batch fails only its own futures, and the worker keeps serving;
- if the worker itself dies (a bug outside the per-batch guard, a failing hook), every pending
  future fails at once and :meth:`MicroBatcher.health` reports it, so ``/ready`` turns 503;
- the number of results is checked against the batch size;
- cancelled items (client gone) and expired items (deadline passed) are skipped before they run;
- the wait timer starts at the oldest waiting item, not at the last arrival;
- admission is all-or-nothing per request and bounded: a full queue refuses at once;
- requests are served round-robin: every request with windows waiting gets one window into each
  batch before any request gets a second, so a short request waits about one batch behind a
  1,000-window one instead of behind all of it;
- with ``lanes`` above 1, that many batches run at once, each in its own thread (ONNX Runtime
  releases the GIL). With lanes idle, the waiting windows are split across them, so one request
  alone still uses every lane.

Lanes are the cheap way to use several cores: one single-threaded inference per core needs no
synchronisation inside an op, and a lane that loses its core to Python work (tokenising,
decoding) slows only itself, where one inference spread over both cores waits for the slower
thread at every op (README, "Inference lanes", measured).

Batches are formed when ``max_batch_size`` windows or ``max_batch_tokens`` padded tokens are
waiting, or when the oldest has waited ``max_wait_ms``. The request at the head of the rotation
always goes into the next batch and is then moved to the back (no starvation); the other
requests are visited nearest in length to it first, each giving its window nearest that length,
so padding stays small.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from service.admission import DrainRate, judge
from service.errors import (
    DeadlineExceededError,
    DeadlineUnmeetableError,
    InferenceError,
    QueueFullError,
    RequestTooLargeError,
    ShuttingDownError,
)

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
    started: float = 0.0  # the batcher's clock when that batch began (lanes run batches side by side)


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
    # (seconds to drain what is queued, tokens/s): after every admission and every batch
    on_estimate: Callable[[float, float], None] = lambda wait_s, tokens_per_s: None


@dataclass(frozen=True)
class Health:
    """Why the batcher should not be sent work (``None`` reason: healthy)."""

    reason: str | None

    @property
    def ok(self) -> bool:
        return self.reason is None


class MicroBatcher:
    def __init__(
        self,
        batch_fn: BatchFn,
        max_batch_size: int = 8,
        max_batch_tokens: int = 4096,
        max_wait_s: float = 0.002,
        max_queue: int = 1024,
        hooks: BatcherHooks | None = None,
        max_consecutive_failures: int = 3,
        stall_s: float = 60.0,
        initial_tokens_per_s: float = 2_000.0,
        clock: Callable[[], float] = time.monotonic,
        headroom: float = 1.0,
        lanes: int = 1,
    ) -> None:
        if lanes < 1:
            raise ValueError(f"lanes must be at least 1, not {lanes}")
        self._batch_fn = batch_fn
        self.lanes = lanes
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.max_consecutive_failures = max_consecutive_failures
        self.stall_s = stall_s
        self._hooks = hooks or BatcherHooks()
        self._clock = clock
        self.rate = DrainRate(initial_tokens_per_s)
        self.headroom = headroom
        self._tokens = 0  # window tokens queued or in flight: the work admission prices
        self._last_finished: float | None = None
        self._queues: dict[int, deque[_Item]] = {}  # per request, in rotation order
        self._depth = 0
        self._seq = 0
        self._requests = 0
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="inference")
        self._closing = False
        self._batches = 0
        self._failures = 0  # consecutive failed batches
        self._last_failure = 0.0
        self._busy_since: float | None = None  # start of the first batch since the worker last went idle
        self._running: dict[int, tuple[float, list[_Item]]] = {}  # batches in flight: start, items
        self._lane_tasks: set[asyncio.Task[None]] = set()
        self._death: str | None = None
        self._drain_expired = False

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Create the loop-bound objects; call from inside the running event loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.create_task(self._worker(), name="micro-batcher")
        self._task.add_done_callback(self._on_worker_exit)

    async def drain(self, timeout_s: float | None = None) -> None:
        """Stop accepting, finish everything queued, then stop the worker.

        After ``timeout_s`` the worker is cancelled and whatever is still queued fails at once:
        a hung inference must not hold a shutdown past the orchestrator's grace period.
        """
        self._closing = True
        if self._wakeup is not None:
            self._wakeup.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
            if not done:
                log.error("drain did not finish within %.1f s; failing %d queued windows", timeout_s or 0, self._depth)
                self._drain_expired = True
                self._task.cancel()
                await asyncio.wait({self._task})
        self._executor.shutdown(wait=False)

    @property
    def clock(self) -> Callable[[], float]:
        """The clock deadlines are measured on (injected in tests)."""
        return self._clock

    @property
    def drain_expired(self) -> bool:
        return self._drain_expired

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def health(self, now: float | None = None) -> Health:
        """Ready unless the worker stopped, the last batches all failed (for ``stall_s`` after the
        last failure: an unready pod gets no traffic, so no success could ever clear it; after
        that it is tried again), or one batch hangs."""
        now = self._clock() if now is None else now
        if not (alive := self.liveness(now)).ok:
            return alive
        if self._failures >= self.max_consecutive_failures and now - self._last_failure < self.stall_s:
            return Health(f"the last {self._failures} inference batches failed")
        started = self._oldest_running()
        if started is not None and now - started > self.stall_s:
            return Health(f"an inference batch has been running for over {self.stall_s:.0f} s")
        return Health(None)

    def liveness(self, now: float | None = None) -> Health:
        """Alive unless the worker stopped or a batch hangs for twice ``stall_s``: a restart is the
        only cure for either, so ``/health`` reports it to the orchestrator."""
        if self._death is not None:
            return Health(f"inference worker stopped: {self._death}")
        if self._task is not None and self._task.done() and not self._closing:
            return Health("inference worker not running")
        started = self._oldest_running()
        if started is not None and (self._clock() if now is None else now) - started > 2 * self.stall_s:
            return Health(f"an inference batch has hung for over {2 * self.stall_s:.0f} s")
        return Health(None)

    def _oldest_running(self) -> float | None:
        return min((started for started, _ in self._running.values()), default=None)

    def _on_worker_exit(self, task: asyncio.Task[None]) -> None:
        """A worker that ends while work is pending must not leave futures hanging."""
        if task.cancelled() and not self._drain_expired:
            self._death = "cancelled"
        elif not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            self._death = f"{type(exc).__name__}: {exc}"
            log.error("the inference worker died; failing %d queued windows", self._depth, exc_info=exc)
        if self._death is None and not self._depth and not self._running:
            return
        error: Exception = InferenceError(f"inference worker stopped ({self._death})")
        if self._death is None:  # a drain that ran out of time: the service is stopping, retry elsewhere
            error = ShuttingDownError("the service stopped before this request's inference finished")
        failed = 0
        for queue in [*self._queues.values(), *(items for _, items in self._running.values())]:
            for item in queue:
                if not item.future.done():
                    item.future.set_exception(error)
                    failed += 1
        self._queues.clear()
        self._running.clear()
        self._depth = self._tokens = 0
        self._closing = True
        if failed:
            self._hooks.on_drop("worker_stopped", failed)

    # -- admission -------------------------------------------------------------------------
    def submit(self, windows: Sequence[np.ndarray], deadline: float) -> list[asyncio.Future[WindowResult]]:
        """Queue one request's windows together, or refuse them all.

        Refused when the queue is at its hard bound (``max_queue``, memory), or when the queue
        with this request in it would not drain before the earliest deadline it holds
        (:mod:`service.admission`): a 503 now instead of a 504 later.
        """
        if self._closing or not self.running:
            raise ShuttingDownError("the service is shutting down")
        self._discard_dead()  # expired and cancelled work neither holds a deadline nor takes space
        now = self._clock()
        if deadline <= now:
            raise DeadlineExceededError("the request's deadline passed before it could be queued")
        if len(windows) > self.max_queue:
            self._hooks.on_drop("too_large", len(windows))
            raise RequestTooLargeError(
                f"the request needs {len(windows)} windows; the queue holds {self.max_queue}: send less text per request"
            )
        if self._depth + len(windows) > self.max_queue:
            self._hooks.on_drop("queue_full", len(windows))
            raise QueueFullError(f"queue full ({self._depth} windows waiting)")
        tokens = sum(len(w) for w in windows)
        earliest = min([deadline, *(q[0].deadline for q in self._queues.values())])
        verdict = judge(self._tokens, tokens, earliest - now, self.rate, self.headroom)
        if not verdict.admit:
            if not self._tokens:  # alone on an idle service and still too slow: waiting cannot help
                self._hooks.on_drop("too_large", len(windows))
                raise RequestTooLargeError(
                    f"the request needs about {verdict.estimate_s:.1f} s of inference, over its {deadline - now:.1f} s deadline: "
                    "send less text per request"
                )
            self._hooks.on_drop("deadline_unmeetable", len(windows))
            raise DeadlineUnmeetableError(
                f"the queue would take about {verdict.estimate_s:.1f} s with this request, past the earliest deadline in it",
                retry_after_s=verdict.retry_after_s,
            )
        loop = asyncio.get_running_loop()
        queue: deque[_Item] = deque()
        for ids in windows:
            self._seq += 1
            queue.append(_Item(ids, loop.create_future(), now, deadline, self._seq))
        if queue:
            self._requests += 1
            self._queues[self._requests] = queue
            self._depth += len(queue)
            self._tokens += tokens
        self._report()
        assert self._wakeup is not None
        self._wakeup.set()
        return [item.future for item in queue]

    def precheck(self, deadline: float) -> None:
        """Refuse before any tokenising when even one window could not be admitted now: under
        overload the refusals then cost the CPU almost nothing that admitted work needs."""
        self._discard_dead()
        now = self._clock()
        earliest = min([deadline, *(q[0].deadline for q in self._queues.values())])
        verdict = judge(self._tokens, 1, earliest - now, self.rate, self.headroom)
        if self._tokens and not verdict.admit:
            self._hooks.on_drop("deadline_unmeetable", 0)
            raise DeadlineUnmeetableError(
                f"the queue needs about {verdict.estimate_s:.1f} s, past the earliest deadline in it",
                retry_after_s=verdict.retry_after_s,
            )

    def wait_estimate(self) -> float:
        """Seconds the queued and in-flight work needs at the measured rate."""
        return self.rate.seconds_for(self._tokens)

    def _report(self) -> None:
        self._hooks.on_queue_depth(self._depth)
        self._hooks.on_estimate(self.wait_estimate(), self.rate.tokens_per_s)

    # -- worker ----------------------------------------------------------------------------
    async def _worker(self) -> None:
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._reap()
                self._discard_dead()
                if not self._depth or len(self._lane_tasks) >= self.lanes:
                    if not self._depth and not self._lane_tasks:  # idle: the next batch opens a new busy stretch
                        self._busy_since = self._last_finished = None
                        if self._closing:
                            return
                    self._wakeup.clear()
                    await self._wakeup.wait()  # new work, or a lane freed
                    continue
                oldest = min(queue[0].enqueued for queue in self._queues.values())
                remaining = oldest + self.max_wait_s - self._clock()
                if remaining > 0 and not self._batch_ready() and not self._closing:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), timeout=remaining)
                    except TimeoutError:
                        pass
                    continue
                number = self._take_batch()
                if number is not None:
                    task = asyncio.create_task(self._run(loop, number), name="inference-lane")
                    self._lane_tasks.add(task)
                    task.add_done_callback(lambda _: self._wakeup.set() if self._wakeup is not None else None)
        finally:  # cancelled (a drain out of time) or dead: no lane outlives the worker
            for task in self._lane_tasks:
                task.cancel()
            if self._lane_tasks:
                await asyncio.wait(self._lane_tasks)

    def _reap(self) -> None:
        """Forget finished lanes; a lane that died of a bug outside the per-batch guard (a failing
        hook) takes the worker with it, as it would with one lane."""
        done = [t for t in self._lane_tasks if t.done()]
        self._lane_tasks.difference_update(done)
        errors = [exc for t in done if not t.cancelled() and (exc := t.exception()) is not None]  # each retrieved
        if errors:
            raise errors[0]

    def _batch_ready(self) -> bool:
        if self._depth >= self.max_batch_size:
            return True
        longest = max(len(i.ids) for queue in self._queues.values() for i in queue)
        return longest * self._depth >= self.max_batch_tokens

    def _discard_dead(self) -> None:
        """Drop items whose owner went away, and fail those whose deadline passed."""
        now = self._clock()
        cancelled = expired = 0
        for key in list(self._queues):
            alive: deque[_Item] = deque()
            for item in self._queues[key]:
                if item.future.done():
                    cancelled += 1
                    self._tokens -= len(item.ids)
                elif item.deadline <= now:
                    item.future.set_exception(DeadlineExceededError("deadline passed while queued"))
                    expired += 1
                    self._tokens -= len(item.ids)
                else:
                    alive.append(item)
            if alive:
                self._queues[key] = alive
            else:
                del self._queues[key]
        if cancelled:
            self._hooks.on_drop("cancelled", cancelled)
        if expired:
            self._hooks.on_drop("deadline", expired)
        if cancelled or expired:
            self._depth -= cancelled + expired
            self._report()

    def _take_batch(self) -> int | None:
        """Round-robin over requests, one window each per round, within both limits, and no more
        than an even share of what waits for the lanes now free.

        The head of the rotation opens the batch with its oldest window; from then on each request
        gives the window of its own nearest that one's length (a request's windows may run in any
        order), and requests are visited nearest first. Requests served go to the back of the
        rotation, in the order they were served. The batch is in flight from here (its number is
        returned), before any hook runs: if one fails, the exit handler finds its items.
        """
        order = list(self._queues.items())
        anchor = len(order[0][1][0].ids)
        rest = sorted(range(1, len(order)), key=lambda k: (abs(len(order[k][1][_nearest(order[k][1], anchor)].ids) - anchor), k))
        ranked = [order[0], *(order[k] for k in rest)]
        chosen: list[_Item] = []
        served: list[int] = []
        longest = 0
        progress = True
        free = self.lanes - len(self._lane_tasks)
        size = min(self.max_batch_size, -(-self._depth // free))
        while progress and len(chosen) < size:
            progress = False
            for key, queue in ranked:
                if not queue or len(chosen) >= size:
                    continue
                index = _nearest(queue, anchor) if chosen else 0
                width = max(longest, len(queue[index].ids))
                if chosen and width * (len(chosen) + 1) > self.max_batch_tokens:
                    continue
                chosen.append(queue[index])
                del queue[index]
                longest, progress = width, True
                if key not in served:
                    served.append(key)
        for key in served:
            queue = self._queues.pop(key)
            if queue:
                self._queues[key] = queue
        if not chosen:
            return None
        self._depth -= len(chosen)
        self._batches += 1
        now = self._clock()
        self._running[self._batches] = (now, chosen)
        self._busy_since = now if self._busy_since is None else self._busy_since
        self._report()
        return self._batches

    async def _run(self, loop: asyncio.AbstractEventLoop, number: int) -> None:
        started, batch = self._running[number]  # there until its futures are set: the exit handler fails them
        real = sum(len(i.ids) for i in batch)
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
            self._failures += 1
            self._last_failure = self._clock()
            self._running.pop(number, None)
            self._tokens -= real
            self._hooks.on_drop("inference_error", len(batch))
            self._report()
            return
        finished = self._clock()
        self._failures = 0
        self._tokens -= real
        for item, logits in zip(batch, outputs):
            if not item.future.done():  # the owner may have gone while the batch ran
                item.future.set_result(WindowResult(logits, started - item.enqueued, finished - started, number, started))
        self._running.pop(number, None)
        # Drain rate over busy wall time: each batch counts from the previous batch's end (any lane),
        # or from the start of the busy stretch, so the intervals tile the time since the worker last
        # went idle, whatever order the lanes finish in. A batch run back to back with the previous
        # one also pays for the gap between them (scheduling, the event loop), which admission must
        # price; idle time is never counted.
        busy = self._busy_since if self._busy_since is not None else started
        last = self._last_finished if self._last_finished is not None else busy
        self.rate.observe(real, finished - max(busy, last))
        self._last_finished = finished
        self._hooks.on_batch(BatchStats(len(batch), max(len(i.ids) for i in batch) * len(batch), real, finished - started))
        self._report()


def _nearest(queue: deque[_Item], length: int, looked_at: int = 32) -> int:
    """Index of the window nearest ``length`` tokens long among the oldest ``looked_at`` of
    ``queue`` (the oldest of equals): a 1,000-window request is not scanned whole every batch."""
    best, gap = 0, abs(len(queue[0].ids) - length)
    for index, item in enumerate(itertools.islice(queue, looked_at)):
        if (d := abs(len(item.ids) - length)) < gap:
            best, gap = index, d
    return best
