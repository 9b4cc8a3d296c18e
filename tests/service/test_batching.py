"""The MicroBatcher's written contract, event-driven on a real event loop and worker thread.

No test waits a fixed time or measures one: a test that needs the worker busy waits for the batch
function to say it was entered, and time that matters to the batcher (deadlines, the wait timer)
runs on an injected clock the test moves by hand.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import numpy as np
import pytest
from gated_batches import Keyed

from service.batching import BatcherHooks, BatchStats, MicroBatcher
from service.errors import DeadlineExceededError, InferenceError, QueueFullError, RequestTooLargeError, ShuttingDownError


class Recorder:
    """A batch function that tags each row with its first id so results can be traced back.

    ``entered`` is set (on the test's loop) as soon as the worker thread calls it; with a ``gate``
    the call then blocks until the test opens the gate, so the test knows a batch is in flight.
    Build it inside the running loop.
    """

    def __init__(self, fail_on: int | None = None, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = gate
        self.entered = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __call__(self, rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        self._loop.call_soon_threadsafe(self.entered.set)
        if self.gate is not None:
            self.gate.wait(10)  # a guard against a test that never opens it, not a timing
        keys = [int(r[0]) for r in rows]
        self.batches.append(keys)
        if self.fail_on is not None and self.fail_on in keys:
            raise RuntimeError("boom")
        return [np.full((len(r), 2), float(r[0])) for r in rows]


def far() -> float:
    return time.monotonic() + 60


async def in_flight(recorder: Recorder) -> None:
    """Until the worker thread is inside the batch function (and, gated, blocked there)."""
    await asyncio.wait_for(recorder.entered.wait(), 10)


async def settle() -> None:
    """Let the worker coroutine react to what the test just did: loop turns, not seconds."""
    for _ in range(20):
        await asyncio.sleep(0)


class FakeClock:
    """A clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_requests_are_batched_and_routed_back() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch_size=8, max_wait_s=0.02)
    batcher.start()
    futures = [batcher.submit([np.array([k, 1, 2])], far())[0] for k in range(40)]
    results = await asyncio.gather(*futures)
    await batcher.drain()
    assert [int(r.logits[0, 0]) for r in results] == list(range(40))
    assert [len(b) for b in recorder.batches] == [8] * 5  # all were waiting before the worker ran: full batches


async def test_token_budget_limits_batches() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch_size=64, max_batch_tokens=40, max_wait_s=0.02)
    batcher.start()
    futures = [batcher.submit([np.full(10, k)], far())[0] for k in range(12)]
    await asyncio.gather(*futures)
    await batcher.drain()
    assert [len(b) for b in recorder.batches] == [4, 4, 4]  # 4 rows x 10 tokens fill the 40-token budget


async def test_length_grouping_keeps_padding_small() -> None:
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    stats: list[BatchStats] = []
    batcher = MicroBatcher(recorder, max_batch_size=4, max_wait_s=0.01, hooks=BatcherHooks(on_batch=stats.append))
    batcher.start()
    blocker = batcher.submit([np.array([99])], far())  # occupies the worker while the queue fills
    await in_flight(recorder)
    lengths = [3, 120, 4, 118, 5, 119, 3, 121]
    futures = [batcher.submit([np.full(n, i)], far())[0] for i, n in enumerate(lengths)]
    gate.set()
    await asyncio.gather(*blocker, *futures)
    await batcher.drain()
    later = stats[1:]
    assert len(later) == 2  # the eight waiting windows in two full batches
    assert sum(s.padded_tokens - s.real_tokens for s in later) < 40  # short with short, long with long


async def test_full_queue_refuses_whole_request() -> None:
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    batcher = MicroBatcher(recorder, max_batch_size=1, max_queue=3, max_wait_s=0)
    batcher.start()
    first = batcher.submit([np.array([1])], far())
    await in_flight(recorder)  # the worker took it and blocks on the gate
    accepted = batcher.submit([np.array([2]), np.array([3])], far())
    with pytest.raises(QueueFullError):
        batcher.submit([np.array([4]), np.array([5])], far())
    assert batcher.depth == 2  # nothing of the refused request was queued
    gate.set()
    await asyncio.gather(*first, *accepted)
    await batcher.drain()


async def test_request_larger_than_the_queue_is_too_large_not_overload() -> None:
    batcher = MicroBatcher(Recorder(), max_queue=3)
    batcher.start()
    with pytest.raises(RequestTooLargeError):
        batcher.submit([np.array([k]) for k in range(4)], far())
    await batcher.drain()


async def test_failing_batch_fails_only_its_own_requests() -> None:
    recorder = Recorder(fail_on=7)
    batcher = MicroBatcher(recorder, max_batch_size=1, max_wait_s=0)
    batcher.start()
    futures = [batcher.submit([np.array([k])], far())[0] for k in range(10)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    after = await batcher.submit([np.array([11])], far())[0]  # the worker survived
    await batcher.drain()
    assert isinstance(results[7], InferenceError)
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 7)
    assert int(after.logits[0, 0]) == 11


async def test_wrong_result_count_is_an_error() -> None:
    batcher = MicroBatcher(lambda rows: [], max_batch_size=2, max_wait_s=0)
    batcher.start()
    with pytest.raises(InferenceError):
        await batcher.submit([np.array([1])], far())[0]
    await batcher.drain()


async def test_cancelled_and_expired_items_never_run() -> None:
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    clock = FakeClock()
    drops: list[tuple[str, int]] = []
    batcher = MicroBatcher(
        recorder, max_batch_size=1, max_wait_s=0, clock=clock, hooks=BatcherHooks(on_drop=lambda r, n: drops.append((r, n)))
    )
    batcher.start()
    running = batcher.submit([np.array([1])], clock.now + 60)
    await in_flight(recorder)  # the worker is busy: the next three wait in the queue
    cancelled = batcher.submit([np.array([2])], clock.now + 60)
    expired = batcher.submit([np.array([3])], clock.now + 1)
    kept = batcher.submit([np.array([4])], clock.now + 60)
    cancelled[0].cancel()  # the client went away
    clock.now += 2  # past the second one's deadline, while it is still queued
    gate.set()
    await asyncio.gather(*running, *kept)
    with pytest.raises(DeadlineExceededError):
        await expired[0]
    await batcher.drain()
    ran = [k for b in recorder.batches for k in b]
    assert 2 not in ran and 3 not in ran and 4 in ran
    assert ("cancelled", 1) in drops and ("deadline", 1) in drops


async def test_wait_timer_starts_at_the_oldest_item() -> None:
    # On a clock that stands still unless the test moves it, the batch can only run because an
    # arrival found the oldest item's wait used up; a timer restarted by each arrival never runs it.
    recorder = Recorder()
    clock = FakeClock()
    batcher = MicroBatcher(recorder, max_batch_size=100, max_wait_s=0.25, clock=clock)
    batcher.start()
    first = batcher.submit([np.array([1])], clock.now + 60)
    for k in range(2, 6):  # a trickle, one every 0.0625 s: the fourth arrives as the first's 0.25 s are used up
        await settle()
        assert batcher.depth == k - 1, "a batch was taken before the oldest item had waited max_wait_s"
        clock.now += 0.0625
        batcher.submit([np.array([k])], clock.now + 60)
    result = await asyncio.wait_for(first[0], 10)
    assert recorder.batches == [[1, 2, 3, 4, 5]]
    assert result.queued_s == 0.25  # exactly max_wait_s on the injected clock, from the first arrival
    await batcher.drain()


async def test_drain_finishes_queued_work_then_refuses() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch_size=2, max_wait_s=0.5)
    batcher.start()
    futures = [batcher.submit([np.array([k])], far())[0] for k in range(5)]
    await batcher.drain()
    assert all(f.done() and not f.cancelled() for f in futures)
    with pytest.raises(ShuttingDownError):
        batcher.submit([np.array([9])], far())


async def test_round_robin_short_request_overtakes_a_long_one() -> None:
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    batcher = MicroBatcher(recorder, max_batch_size=4, max_wait_s=0)
    batcher.start()
    big = batcher.submit([np.full(10, 1) for _ in range(40)], far())  # one request, 40 windows
    await in_flight(recorder)  # its first batch is in flight, blocked on the gate
    small = batcher.submit([np.full(10, 2)], far())
    gate.set()
    await asyncio.gather(*small)
    # the very next batch after the one in flight, not after the 36 queued windows of the big one
    assert [k for k, b in enumerate(recorder.batches) if 2 in b] == [1]
    await asyncio.gather(*big)
    await batcher.drain()
    assert sum(b.count(1) for b in recorder.batches) == 40


async def test_round_robin_gives_each_request_a_window_per_batch() -> None:
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    batcher = MicroBatcher(recorder, max_batch_size=3, max_wait_s=0)
    batcher.start()
    blocker = batcher.submit([np.full(5, 9)], far())
    await in_flight(recorder)
    requests = [batcher.submit([np.full(5, k) for _ in range(4)], far()) for k in (1, 2, 3)]
    gate.set()
    await asyncio.gather(*blocker, *(f for r in requests for f in r))
    await batcher.drain()
    assert [sorted(b) for b in recorder.batches[1:]] == [[1, 2, 3]] * 4


async def test_dead_worker_fails_everything_pending_and_reports_unhealthy() -> None:
    gate = threading.Event()

    def broken_hook(stats: BatchStats) -> None:
        raise RuntimeError("metrics bug")

    recorder = Recorder(gate=gate)
    batcher = MicroBatcher(recorder, max_batch_size=1, max_wait_s=0, hooks=BatcherHooks(on_batch=broken_hook))
    batcher.start()
    first = batcher.submit([np.array([1])], far())
    await in_flight(recorder)
    queued = batcher.submit([np.array([2]), np.array([3])], far())
    gate.set()
    assert int((await first[0]).logits[0, 0]) == 1  # its batch ran; the hook failed after
    for future in queued:
        with pytest.raises(InferenceError):
            await asyncio.wait_for(future, 2)
    health = batcher.health()
    assert not health.ok and "metrics bug" in str(health.reason)
    with pytest.raises(ShuttingDownError):
        batcher.submit([np.array([4])], far())
    await batcher.drain()


async def test_repeated_failures_and_a_hung_batch_are_unhealthy() -> None:
    batcher = MicroBatcher(Recorder(fail_on=1), max_batch_size=1, max_wait_s=0, max_consecutive_failures=2)
    batcher.start()
    for _ in range(2):
        with pytest.raises(InferenceError):
            await batcher.submit([np.array([1])], far())[0]
    assert "failed" in str(batcher.health().reason)
    assert batcher.health(now=time.monotonic() + 61).ok  # after stall_s the pod is tried again
    await batcher.submit([np.array([5])], far())[0]
    assert batcher.health().ok  # one success clears it
    await batcher.drain()

    gate = threading.Event()
    recorder = Recorder(gate=gate)
    clock = FakeClock()
    hung = MicroBatcher(recorder, max_batch_size=1, max_wait_s=0, stall_s=10, clock=clock)
    hung.start()
    stuck = hung.submit([np.array([1])], clock.now + 60)
    waiting = hung.submit([np.array([2])], clock.now + 60)
    await in_flight(recorder)  # the worker took the first and blocks on the gate
    clock.now += 11  # running longer than stall_s
    assert "running for over" in str(hung.health().reason) and hung.liveness().ok  # unready, still alive
    clock.now += 10  # longer than twice stall_s: hung, only a restart helps
    assert "hung for over" in str(hung.liveness().reason)
    await hung.drain(timeout_s=0.05)  # does not wait for the hung batch: what is left answers 503
    for future in (*stuck, *waiting):
        with pytest.raises(ShuttingDownError):
            await future
    gate.set()


async def test_each_request_gives_its_window_nearest_the_batch_length() -> None:
    """Sentence-aligned windows of one abstract differ in length: a long one and the short tail.
    Two such requests pair long with long and short with short, whatever order each sent them in."""
    gate = threading.Event()
    recorder = Recorder(gate=gate)
    stats: list[BatchStats] = []
    batcher = MicroBatcher(recorder, max_batch_size=2, max_wait_s=0, hooks=BatcherHooks(on_batch=stats.append))
    batcher.start()
    blocker = batcher.submit([np.array([99])], far())
    await in_flight(recorder)
    first = batcher.submit([np.full(120, 1), np.full(5, 2)], far())
    second = batcher.submit([np.full(6, 3), np.full(118, 4)], far())
    gate.set()
    await asyncio.gather(*blocker, *first, *second)
    await batcher.drain()
    assert [sorted(b) for b in recorder.batches[1:]] == [[1, 4], [2, 3]]
    assert sum(s.padded_tokens - s.real_tokens for s in stats[1:]) == 2 + 1


async def test_lanes_run_batches_at_once_and_finish_in_any_order() -> None:
    batches = Keyed()
    batcher = MicroBatcher(batches, max_batch_size=1, max_wait_s=0, lanes=2)
    batcher.start()
    first = batcher.submit([np.array([1])], far())
    second = batcher.submit([np.array([2])], far())
    assert sorted(await batches.running(2)) == [[1], [2]]  # both in flight: one lane would hold the second back
    third = batcher.submit([np.array([3])], far())
    await settle()
    assert batches.entered.empty() and batcher.depth == 1  # both lanes busy: the third waits
    batches.gate(2).set()  # the later batch finishes first; its lane takes the third
    assert int((await second[0]).logits[0, 0]) == 2 and not first[0].done()
    assert await batches.running(1) == [[3]]
    batches.gate(3).set()
    batches.gate(1).set()
    results = await asyncio.gather(*first, *third)
    assert [int(r.logits[0, 0]) for r in results] == [1, 3]
    assert batcher.health().ok
    await batcher.drain()


async def test_one_request_alone_is_split_over_the_idle_lanes() -> None:
    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch_size=8, max_wait_s=0, lanes=2)
    batcher.start()
    results = await asyncio.gather(*batcher.submit([np.array([k]) for k in range(8)], far()))
    await batcher.drain()
    assert [int(r.logits[0, 0]) for r in results] == list(range(8))
    assert sorted(len(b) for b in recorder.batches) == [4, 4]  # one lane would run all 8 in one batch


async def test_a_failing_lane_fails_only_its_batch() -> None:
    batches = Keyed(fail_on=1)
    batcher = MicroBatcher(batches, max_batch_size=1, max_wait_s=0, lanes=2)
    batcher.start()
    failing = batcher.submit([np.array([1])], far())
    fine = batcher.submit([np.array([2])], far())
    await batches.running(2)
    batches.gate(1).set()
    with pytest.raises(InferenceError):
        await failing[0]
    assert not fine[0].done()  # the other lane's batch is still running, untouched
    batches.gate(2).set()
    assert int((await fine[0]).logits[0, 0]) == 2
    await batcher.drain()


async def test_a_dead_lane_fails_what_the_other_lane_runs_and_everything_queued() -> None:
    def broken_hook(stats: BatchStats) -> None:
        raise RuntimeError("metrics bug")

    batches = Keyed()
    batcher = MicroBatcher(batches, max_batch_size=1, max_wait_s=0, lanes=2, hooks=BatcherHooks(on_batch=broken_hook))
    batcher.start()
    first = batcher.submit([np.array([1])], far())
    other = batcher.submit([np.array([2])], far())
    await batches.running(2)
    queued = batcher.submit([np.array([3])], far())
    batches.gate(1).set()
    assert int((await first[0]).logits[0, 0]) == 1  # its batch ran; the hook failed after
    for future in (*other, *queued):
        with pytest.raises(InferenceError):
            await asyncio.wait_for(future, 2)
    assert "metrics bug" in str(batcher.health().reason)
    batches.gate(2).set()
    await batcher.drain()


async def test_a_drain_out_of_time_fails_every_lane_in_flight() -> None:
    batches = Keyed()
    batcher = MicroBatcher(batches, max_batch_size=1, max_wait_s=0, lanes=2)
    batcher.start()
    running = [batcher.submit([np.array([k])], far()) for k in (1, 2)]
    await batches.running(2)
    waiting = batcher.submit([np.array([3])], far())
    await batcher.drain(timeout_s=0.05)  # both batches hang: what is left answers 503
    for future in (*running[0], *running[1], *waiting):
        with pytest.raises(ShuttingDownError):
            await future
    for key in (1, 2):
        batches.gate(key).set()


def test_lanes_must_be_positive() -> None:
    with pytest.raises(ValueError, match="lanes"):
        MicroBatcher(Recorder.__new__(Recorder), lanes=0)


@pytest.mark.parametrize("lanes", [1, 2])
async def test_a_hook_failing_as_a_batch_is_taken_fails_that_batch_too(lanes: int) -> None:
    """The batch is in flight before the queue-depth hook runs: when that hook fails, the worker
    dies with the batch's windows where the exit handler finds them, not lost in between."""
    calls = 0

    def depth_hook(depth: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:  # the first is the submission; the second, taking the batch
            raise RuntimeError("metrics bug")

    recorder = Recorder()
    batcher = MicroBatcher(recorder, max_batch_size=2, max_wait_s=0, lanes=lanes, hooks=BatcherHooks(on_queue_depth=depth_hook))
    batcher.start()
    futures = batcher.submit([np.array([1]), np.array([2]), np.array([3])], far())
    for future in futures:
        with pytest.raises(InferenceError):
            await asyncio.wait_for(future, 2)
    assert "metrics bug" in str(batcher.health().reason)
    await batcher.drain()
