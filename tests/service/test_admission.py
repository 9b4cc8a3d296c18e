"""Deadline-aware admission, driven by an injected clock: no wall-clock thresholds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest
from gated_batches import Keyed

from service.admission import DrainRate, judge
from service.batching import MicroBatcher
from service.errors import DeadlineUnmeetableError, RequestTooLargeError


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowModel:
    """Each batch 'takes' ``seconds_per_token`` x its tokens on the fake clock; ``hold`` pauses it."""

    def __init__(self, clock: FakeClock, seconds_per_token: float) -> None:
        self.clock = clock
        self.seconds_per_token = seconds_per_token
        self.hold = asyncio.Event()

    def __call__(self, rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        self.clock.now += self.seconds_per_token * sum(len(r) for r in rows)
        return [np.zeros((len(r), 2)) for r in rows]


def window(tokens: int = 100) -> np.ndarray:
    return np.ones(tokens, dtype=np.int64)


def test_judge_and_retry_after_grow_with_the_queue() -> None:
    rate = DrainRate(100.0)  # tokens/s
    assert judge(0, 500, 10, rate).admit
    assert judge(500, 500, 10, rate).admit  # exactly fits: 10 s
    refused = [judge(queued, 500, 10, rate) for queued in (600, 1_500, 5_000)]
    assert not any(v.admit for v in refused)
    assert [v.retry_after_s for v in refused] == [1, 10, 45]  # grows with the queue
    # With headroom 0.8 the queue may only fill 8 of the 10 s: room for the machine to slow down.
    assert judge(300, 500, 10, rate, headroom=0.8).admit and not judge(400, 500, 10, rate, headroom=0.8).admit


def test_rate_follows_a_change_in_speed() -> None:
    rate = DrainRate(2_000.0)
    rate.observe(1_000, 1.0)
    assert rate.tokens_per_s == 1_000.0  # the first measurement replaces the default
    for _ in range(30):
        rate.observe(1_000, 0.1)  # ten times faster
    assert rate.tokens_per_s == pytest.approx(10_000, rel=0.01)
    for _ in range(40):
        rate.observe(1_000, 2.0)  # twenty times slower again
    assert rate.tokens_per_s == pytest.approx(500, rel=0.01)


async def test_admission_refuses_past_the_deadline_and_admits_once_drained() -> None:
    clock = FakeClock()
    model = SlowModel(clock, seconds_per_token=0.01)  # 100 tokens/s
    batcher = MicroBatcher(model, max_batch_size=1, max_wait_s=0, initial_tokens_per_s=100.0, clock=clock)
    deadline = clock.now + 10  # every request: 10 s
    hold = asyncio.Event()
    batcher._wakeup = asyncio.Event()  # admission without a running worker: nothing drains yet
    batcher._task = asyncio.ensure_future(hold.wait())
    accepted = [batcher.submit([window()], deadline) for _ in range(10)]  # 10 x 1 s of work: fits exactly
    with pytest.raises(DeadlineUnmeetableError) as refused:
        batcher.submit([window()], deadline)
    assert refused.value.retry_after_s == 1
    with pytest.raises(DeadlineUnmeetableError) as later:
        batcher.submit([window(300)], deadline)
    assert later.value.retry_after_s == 3  # more work, a longer wait
    assert batcher.depth == 10 and batcher.wait_estimate() == pytest.approx(10.0)

    hold.set()
    await batcher._task
    batcher.start()  # the worker drains the queue on the fake clock
    results = await asyncio.gather(*(f for r in accepted for f in r))
    assert len(results) == 10 and batcher.depth == 0
    assert clock.now == pytest.approx(1010.0)  # all ten finished exactly at the deadline, none after
    deadline = clock.now + 10
    assert len(batcher.submit([window()], deadline)) == 1  # drained: admitted again
    await batcher.drain()


async def test_the_estimate_follows_a_slowdown() -> None:
    clock = FakeClock()
    model = SlowModel(clock, seconds_per_token=0.001)  # 1,000 tokens/s
    batcher = MicroBatcher(model, max_batch_size=1, max_wait_s=0, initial_tokens_per_s=1_000.0, clock=clock)
    batcher.start()
    for _ in range(5):
        await batcher.submit([window()], clock.now + 10)[0]
    assert batcher.rate.tokens_per_s == pytest.approx(1_000)
    model.seconds_per_token = 0.01  # the machine gets ten times slower
    for _ in range(40):
        await batcher.submit([window()], clock.now + 10)[0]
    assert batcher.rate.tokens_per_s == pytest.approx(100, rel=0.02)
    # What that means for admission: the same 10 s deadline now holds a tenth of the work.
    assert judge(0, 1_000, 10, batcher.rate).admit and not judge(0, 1_200, 10, batcher.rate).admit
    await batcher.drain()


async def test_alone_on_an_idle_service_and_still_too_slow_is_413() -> None:
    clock = FakeClock()
    batcher = MicroBatcher(SlowModel(clock, 0.01), initial_tokens_per_s=100.0, clock=clock)
    batcher.start()
    with pytest.raises(RequestTooLargeError, match="over its 5.0 s deadline"):
        batcher.submit([window() for _ in range(6)], clock.now + 5)
    await batcher.drain()


async def test_precheck_refuses_before_any_work_when_the_queue_is_past_the_deadline() -> None:
    clock = FakeClock()
    batcher = MicroBatcher(SlowModel(clock, 0.01), max_batch_size=1, initial_tokens_per_s=100.0, clock=clock)
    hold = asyncio.Event()
    batcher._wakeup = asyncio.Event()
    batcher._task = asyncio.ensure_future(hold.wait())  # admission only: nothing drains
    batcher.precheck(clock.now + 5)  # empty queue: never refused here
    batcher.submit([window() for _ in range(5)], clock.now + 30)  # 5 s queued
    batcher.precheck(clock.now + 6)  # one more window still fits in 6 s
    with pytest.raises(DeadlineUnmeetableError) as refused:
        batcher.precheck(clock.now + 5)
    assert refused.value.retry_after_s == 1
    hold.set()
    await batcher._task


async def test_the_rate_with_two_lanes_is_what_both_drain_together() -> None:
    """Two 100-token batches run side by side for 10 s on the fake clock: 20 tokens/s drained.
    Timing each batch from its own start would say 10."""
    clock = FakeClock()
    model = Keyed()
    batcher = MicroBatcher(model, max_batch_size=1, max_wait_s=0, initial_tokens_per_s=100.0, clock=clock, lanes=2)
    batcher.start()
    futures = [batcher.submit([np.full(100, key)], clock.now + 60)[0] for key in (1, 2)]
    assert sorted(await model.running(2)) == [[1], [2]]
    clock.now += 10
    model.gate(1).set()
    await futures[0]
    model.gate(2).set()  # finishes at the same instant: no time of its own, its tokens count
    await futures[1]
    assert batcher.rate.tokens_per_s == pytest.approx(20.0)
    await batcher.drain()


async def test_the_rate_counts_from_the_busy_start_when_a_later_batch_finishes_first() -> None:
    """P runs from 0 to 10 s, Q from 9 to 9.5 s: 200 tokens in 10 busy seconds, whichever ends first."""
    clock = FakeClock()
    model = Keyed()
    batcher = MicroBatcher(model, max_batch_size=1, max_wait_s=0, initial_tokens_per_s=100.0, clock=clock, lanes=2)
    batcher.start()
    p = batcher.submit([np.full(100, 1)], clock.now + 60)[0]
    assert await model.running(1) == [[1]]
    clock.now += 9
    q = batcher.submit([np.full(100, 2)], clock.now + 60)[0]
    assert await model.running(1) == [[2]]
    clock.now += 0.5
    model.gate(2).set()
    await q
    clock.now += 0.5
    model.gate(1).set()
    await p
    assert batcher.rate.tokens_per_s == pytest.approx(20.0)
    await batcher.drain()


async def test_idle_time_never_counts_even_after_work_was_cancelled_in_the_queue() -> None:
    """A batch finishes with a window still queued whose client left while the batch ran: the
    service goes idle, and the next batch, ten minutes later, is timed from its own start."""
    clock = FakeClock()
    gate = threading.Event()
    entered: asyncio.Queue[int] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    queued: list[asyncio.Future[object]] = []

    def model(rows: Sequence[np.ndarray]) -> list[np.ndarray]:
        loop.call_soon_threadsafe(entered.put_nowait, int(rows[0][0]))
        gate.wait(10)
        for future in queued:  # the client goes away while the batch runs
            loop.call_soon_threadsafe(future.cancel)
        queued.clear()
        clock.now += 1.0  # every batch takes a second
        return [np.zeros((len(r), 2)) for r in rows]

    batcher = MicroBatcher(model, max_batch_size=1, max_wait_s=0, initial_tokens_per_s=100.0, clock=clock)
    batcher.start()
    first = batcher.submit([np.full(100, 1)], clock.now + 6000)[0]
    await asyncio.wait_for(entered.get(), 10)
    queued.extend(batcher.submit([np.full(100, 2)], clock.now + 6000))
    gate.set()
    await first
    for _ in range(20):
        await asyncio.sleep(0)
    clock.now += 600
    await batcher.submit([np.full(100, 3)], clock.now + 60)[0]
    assert batcher.rate.tokens_per_s == pytest.approx(100.0)  # 100 tokens a second, twice
    await batcher.drain()
