"""The DecodeBatcher's written contract, on a real event loop and a real worker thread.

As in the micro-batcher's tests, nothing waits a fixed time: a test that needs decoding in flight
waits for the decode function to say it was entered, behind a gate the test opens.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import pytest

from service.decode_batcher import DecodeBatcher

T = TypeVar("T")


class Decoder:
    """Squares each job, records the batches it was given; a job equal to ``fail_on`` raises."""

    def __init__(self, fail_on: int | None = None, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.gate = gate
        self.entered = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __call__(self, jobs: Sequence[int]) -> list[int]:
        self._loop.call_soon_threadsafe(self.entered.set)
        if self.gate is not None:
            self.gate.wait(10)  # a guard against a test that never opens it, not a timing
        self.batches.append(list(jobs))
        if self.fail_on in jobs:
            raise ValueError(f"job {self.fail_on} is bad")
        return [j * j for j in jobs]


def threaded(pool: ThreadPoolExecutor) -> Callable[[bool, Callable[[], T]], asyncio.Future[T]]:
    def offload(inline: bool, fn: Callable[[], T]) -> asyncio.Future[T]:
        return asyncio.get_running_loop().run_in_executor(pool, fn)

    return offload


@pytest.fixture
def pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1)


async def test_requests_ready_together_are_decoded_in_one_call(pool: ThreadPoolExecutor) -> None:
    decoder, told = Decoder(), []
    batcher: DecodeBatcher[int, int] = DecodeBatcher(decoder, threaded(pool), lambda jobs: False, on_batch=lambda n, s: told.append((n, s)))
    results = await asyncio.gather(*(batcher.submit(j) for j in range(6)))
    assert results == [0, 1, 4, 9, 16, 25]
    assert decoder.batches == [[0, 1, 2, 3, 4, 5]] and batcher.batches == 1
    assert [n for n, _ in told] == [6] and told[0][1] >= 0  # the metrics hook hears of the call


async def test_arrivals_during_a_decode_wait_for_the_next_one_and_max_jobs_holds(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    decoder = Decoder(gate=gate)
    batcher: DecodeBatcher[int, int] = DecodeBatcher(decoder, threaded(pool), lambda jobs: False, max_jobs=2)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.wait_for(decoder.entered.wait(), 10)
    later = [asyncio.ensure_future(batcher.submit(j)) for j in (2, 3, 4)]
    await asyncio.sleep(0)
    assert batcher.depth == 3
    gate.set()
    assert await first == 1 and [await f for f in later] == [4, 9, 16]
    assert decoder.batches == [[1], [2, 3], [4]]


async def test_a_failing_request_fails_alone(pool: ThreadPoolExecutor) -> None:
    decoder = Decoder(fail_on=3)
    batcher: DecodeBatcher[int, int] = DecodeBatcher(decoder, threaded(pool), lambda jobs: False)
    results = await asyncio.gather(*(batcher.submit(j) for j in (1, 2, 3, 4)), return_exceptions=True)
    assert results[:2] == [1, 4] and results[3] == 16
    assert isinstance(results[2], ValueError) and "job 3 is bad" in str(results[2])
    assert decoder.batches[0] == [1, 2, 3, 4]  # together first, then each alone to find the culprit
    assert sorted(map(tuple, decoder.batches[1:])) == [(1,), (2,), (3,), (4,)]


async def test_a_failing_metrics_hook_leaves_the_answers_alone(pool: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture) -> None:
    def hook(n: int, seconds: float) -> None:
        raise KeyError("a broken collector")

    batcher: DecodeBatcher[int, int] = DecodeBatcher(Decoder(), threaded(pool), lambda jobs: False, on_batch=hook)
    assert await asyncio.gather(*(batcher.submit(j) for j in (2, 3))) == [4, 9]
    assert await batcher.submit(4) == 16  # and the next call is served as usual
    assert "on_batch hook failed" in caplog.text


async def test_the_retry_after_a_failure_skips_a_request_cancelled_meanwhile(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    decoder = Decoder(fail_on=3, gate=gate)
    batcher: DecodeBatcher[int, int] = DecodeBatcher(decoder, threaded(pool), lambda jobs: False)
    futures = [asyncio.ensure_future(batcher.submit(j)) for j in (1, 2, 3)]
    await asyncio.wait_for(decoder.entered.wait(), 10)  # the batch of three is in flight
    futures[1].cancel()
    gate.set()
    assert await futures[0] == 1
    with pytest.raises(ValueError, match="job 3 is bad"):
        await futures[2]
    assert decoder.batches == [[1, 2, 3], [1], [3]]  # 2 was not decoded again


async def test_a_wrong_number_of_results_is_an_error_not_a_misdelivery(pool: ThreadPoolExecutor) -> None:
    batcher: DecodeBatcher[int, int] = DecodeBatcher(lambda jobs: [], threaded(pool), lambda jobs: False)
    results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "0 results for 1 requests" in str(r) for r in results)


async def test_a_cancelled_request_is_skipped_and_the_rest_are_answered(pool: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    decoder = Decoder(gate=gate)
    batcher: DecodeBatcher[int, int] = DecodeBatcher(decoder, threaded(pool), lambda jobs: False)
    first = asyncio.ensure_future(batcher.submit(1))
    await asyncio.wait_for(decoder.entered.wait(), 10)
    doomed, kept = asyncio.ensure_future(batcher.submit(2)), asyncio.ensure_future(batcher.submit(3))
    await asyncio.sleep(0)
    doomed.cancel()
    gate.set()
    assert await first == 1 and await kept == 9
    assert doomed.cancelled()
    assert decoder.batches == [[1], [3]]


async def test_small_work_is_told_it_may_stay_on_the_loop(pool: ThreadPoolExecutor) -> None:
    seen: list[bool] = []

    async def offload(inline: bool, fn: Callable[[], list[int]]) -> list[int]:
        seen.append(inline)
        return fn()

    batcher: DecodeBatcher[int, int] = DecodeBatcher(lambda jobs: [j + 1 for j in jobs], offload, lambda jobs: sum(jobs) < 10)
    assert await batcher.submit(3) == 4
    assert await asyncio.gather(batcher.submit(8), batcher.submit(9)) == [9, 10]
    assert seen == [True, False]


def test_max_jobs_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        DecodeBatcher(lambda jobs: [], threaded(ThreadPoolExecutor(1)), lambda jobs: True, max_jobs=0)
