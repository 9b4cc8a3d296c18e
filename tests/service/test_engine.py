"""NerEngine on the tiny bundle: real tokenizer, real ONNX Runtime session, real batcher.

The engine is plan -> batcher -> finish over the same Pipeline evaluation uses, so what it serves
must be what ``Pipeline.predict`` computes, whatever the batch-mates; its limits refuse before
any tokenising, and its lifecycle is what the app and the SIGTERM drain call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.app import build_engine
from service.decoding.aggregate import Decoding, Entity
from service.engine import NerEngine
from service.errors import RequestTooLargeError, ShuttingDownError, TextTooLongError, UnsupportedOptionError
from service.metrics import Metrics
from service.settings import Settings

TEXTS = [
    "The p53 kinase binds the myc gene in cells.",
    "",
    "the p53 kinase binds the myc gene . " * 12,  # many 16-token windows
    "nothing here",
    "在蛋白质在 p53",
]


@pytest.fixture
async def engine(tiny_bundle: Path) -> AsyncIterator[NerEngine]:
    settings = Settings(model_path=tiny_bundle, max_text_chars=1000, max_length=16, stride=4, max_batch_size=3, max_texts_per_request=3)
    built = build_engine(settings, Metrics())
    built.warmup()
    built.start()
    yield built
    await built.drain(5)


def spans(found: list[list[Entity]]) -> list[list[tuple[int, int, str, float]]]:
    return [[(e.start, e.end, e.label, e.score) for e in ents] for ents in found]


async def test_served_answers_are_the_pipelines_whatever_the_batch_mates(engine: NerEngine) -> None:
    expected = engine.pipeline.predict(TEXTS, engine.session.run, batch_size=1)
    assert sum(len(e) for e in expected) >= 5  # the tiny model finds things to compare
    alone = [await engine.recognize([t]) for t in TEXTS]
    together = await engine.recognize(TEXTS)
    concurrent = await asyncio.gather(*(engine.recognize([t]) for t in TEXTS))
    assert spans(together.entities) == spans(expected)
    assert spans([r.entities[0] for r in alone]) == spans(expected)
    assert spans([r.entities[0] for r in concurrent]) == spans(expected)
    assert together.windows == len(engine.pipeline.plan(TEXTS).rows) > len(TEXTS)
    assert together.tokens == engine.pipeline.plan(TEXTS).tokens


async def test_decoding_each_request_alone_is_a_setting_and_answers_the_same(tiny_bundle: Path, engine: NerEngine) -> None:
    settings = Settings(model_path=tiny_bundle, max_text_chars=1000, max_length=16, stride=4, max_batch_size=3, decode_batch_requests=1)
    alone = build_engine(settings, Metrics())
    alone.start()
    try:
        assert alone.decoder.max_jobs == 1 and engine.decoder.max_jobs == 64
        answers = await asyncio.gather(*(alone.recognize([t]) for t in TEXTS))
        assert alone.decoder.batches == len(TEXTS)  # one decode call per request
        together = await asyncio.gather(*(engine.recognize([t]) for t in TEXTS))
        assert spans([r.entities[0] for r in answers]) == spans([r.entities[0] for r in together])
    finally:
        await alone.drain(5)


async def test_a_request_whose_inference_ends_during_the_drain_is_still_decoded(tiny_bundle: Path) -> None:
    """The drain shuts the CPU pool once inference is done; the decoding still to come runs inline."""
    engine = build_engine(Settings(model_path=tiny_bundle, max_text_chars=2000, max_length=16, stride=4, max_batch_size=3), Metrics())
    engine.start()
    text = "the p53 kinase binds the myc gene . " * 40  # over 256 tokens: decoded off the event loop
    expected = engine.pipeline.predict([text], engine.session.run)
    task = asyncio.ensure_future(engine.recognize([text]))
    for _ in range(100_000):
        if engine.queued_windows:
            break
        await asyncio.sleep(0)
    assert engine.queued_windows, "the request's windows never reached the queue"
    await engine.drain(5)
    assert spans((await task).entities) == spans(expected) and expected[0]


async def test_options_filter_and_are_checked_once(engine: NerEngine) -> None:
    text = ["The p53 kinase binds the myc gene in cells."]
    everything = (await engine.recognize(text)).entities[0]
    assert {e.label for e in everything} == {"protein", "DNA"}
    assert {e.label for e in (await engine.recognize(text, engine.options(labels=["DNA"]))).entities[0]} == {"DNA"}
    assert (await engine.recognize(text, engine.options(min_score=1.0))).entities == [[e for e in everything if e.score >= 1.0]]
    with pytest.raises(UnsupportedOptionError, match="CRF head"):
        engine.options(decoding=Decoding.CRF)
    with pytest.raises(UnsupportedOptionError, match="unknown labels"):
        engine.options(labels=["GENE"])
    assert Decoding.CRF not in engine.decodings


async def test_limits_refuse_before_tokenising(engine: NerEngine) -> None:
    with pytest.raises(TextTooLongError, match="text 1 has 1001 characters"):
        await engine.recognize(["p53", "x" * 1001])
    budget = engine.max_request_windows
    long = "p53 " * 250  # 1,000 characters: the most windows one text may need
    need = engine.pipeline.window_bound(len(long))
    with pytest.raises(RequestTooLargeError, match="send less text per request"):
        await engine.recognize([long] * (budget // need + 1))


async def test_chunks_respect_count_and_window_budget(engine: NerEngine) -> None:
    texts = ["p53 kinase"] * 7 + ["p53 " * 250] * 4
    chunks = engine.chunks(texts)
    assert [i for c in chunks for i in c] == list(range(len(texts)))  # consecutive, all, once
    for chunk in chunks:
        assert len(chunk) <= engine.max_texts
        assert sum(engine.pipeline.window_bound(len(texts[i])) for i in chunk) <= engine.max_request_windows


async def test_lifecycle_ready_drain_then_refuse(engine: NerEngine) -> None:
    assert engine.ready().ok and engine.alive().ok
    work = [asyncio.ensure_future(engine.recognize([t])) for t in TEXTS]
    await asyncio.sleep(0)
    await engine.drain(5)
    assert all(len(r.entities) == 1 for r in await asyncio.gather(*work))  # queued work finished
    assert engine.queued_windows == 0 and not engine.drain_expired
    with pytest.raises(ShuttingDownError):
        await engine.recognize(["p53"])


def test_inference_time_counts_batches_that_ran_side_by_side_once() -> None:
    from service.engine import covered_seconds

    assert covered_seconds([]) == 0.0
    assert covered_seconds([(0.0, 1.0), (2.0, 3.0)]) == 2.0  # one after the other: the sum
    assert covered_seconds([(0.0, 1.0), (0.5, 1.5)]) == 1.5  # two lanes overlapping: not 2.0
    assert covered_seconds([(1.0, 4.0), (0.0, 2.0), (2.5, 3.0)]) == 4.0  # unsorted, one inside another


async def test_the_deadline_covers_decoding_and_the_decoder_goes_on(engine: NerEngine) -> None:
    import threading

    from service.errors import DeadlineExceededError

    release, calls = threading.Event(), []
    finish_many = engine.decoder._finish_many

    def slow(jobs):  # type: ignore[no-untyped-def]
        calls.append(len(jobs))
        release.wait(5)
        return finish_many(jobs)

    engine.decoder._finish_many = slow
    engine.decoder._is_small = lambda jobs: False  # off the loop, as long requests are decoded
    with pytest.raises(DeadlineExceededError, match="decoded"):
        await engine.recognize([TEXTS[0]], timeout_s=0.3)
    release.set()
    late = await engine.recognize([TEXTS[0]], timeout_s=5)  # the decoder is not stuck
    assert spans(late.entities) and calls == [1, 1]
