"""NerEngine: the decoding pipeline's plan -> micro-batcher -> the pipeline's finish.

The only thing route handlers and the app's lifespan call. It owns the bundle, the ONNX session,
the pipeline and the batcher, and reports per-request timings so responses can carry them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

from service.batching import BatcherHooks, Health, MicroBatcher, WindowResult
from service.decode_batcher import DecodeBatcher
from service.decoding.aggregate import Decoding, Entity, Strategy
from service.decoding.consistency import Consistency
from service.decoding.pipeline import Finishing, Options, Overlap, Pipeline, Plan, pad_windows, run_rows
from service.errors import DeadlineExceededError, RequestTooLargeError, TextTooLongError
from service.runtime.bundle import Bundle
from service.runtime.session import OnnxSession

T = TypeVar("T")
# Work this small stays on the event loop (a thread hop costs more); anything bigger goes to the
# engine's bounded CPU pool, so /health answers while a 100,000-character text is tokenised.
_INLINE_CHARS = 1_000
_INLINE_TOKENS = 256


def covered_seconds(intervals: Iterable[tuple[float, float]]) -> float:
    """Wall time inside any of the ``(start, end)`` intervals: a request's inference time when its
    windows ran in several batches, some side by side on different lanes (a sum would count the
    overlap twice)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@dataclass(frozen=True)
class Recognition:
    entities: list[list[Entity]]
    queued_s: float
    inference_s: float
    tokens: int
    windows: int
    batches: tuple[int, ...] = ()  # sequence numbers of the inference batches its windows ran in


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    sha256: str
    labels: tuple[str, ...]
    max_length: int
    stride: int
    aggregation_strategy: str
    decoding: str
    provider: str
    self_check: dict[str, object] | None = None  # the golden-answer check run at startup, if the bundle has one
    limits: dict[str, float] | None = None  # what one request may hold, for clients that chunk
    temperature: float = 1.0  # score calibration: 1.0 means raw probabilities
    heads: tuple[dict[str, object], ...] = ()  # name and labels of each head, one encoder pass for all
    window_align: str = "tokens"  # where windows end: fixed token counts, or sentence starts
    consistency: str = "none"  # whether a name keeps its first mention's type within a text


class Engine(Protocol):
    """The seam between HTTP and inference: routes and the app's lifespan know only this."""

    info: ModelInfo

    async def recognize(self, texts: Sequence[str], options: Options | None = None, timeout_s: float | None = None) -> Recognition:
        """``options`` as :meth:`options` made them (checked); ``None``: the model's defaults."""
        ...

    def options(
        self,
        strategy: Strategy | None = None,
        decoding: Decoding | None = None,
        min_score: float = 0.0,
        labels: Sequence[str] | None = None,
        alternatives: int = 0,
        heads: Sequence[str] | None = None,
        overlap: Overlap = Overlap.KEEP_ALL,
        consistency: Consistency | None = None,
    ) -> Options: ...

    def chunks(self, texts: Sequence[str]) -> list[range]: ...

    def check_many(self, texts: Sequence[str], what: str) -> None: ...

    @property
    def decodings(self) -> tuple[Decoding, ...]: ...

    # -- lifecycle: the app's lifespan, /health, /ready and the SIGTERM drain ------------------
    def warmup(self) -> None: ...

    def start(self) -> None: ...

    def alive(self) -> Health: ...

    def ready(self) -> Health: ...

    @property
    def queued_windows(self) -> int: ...

    async def drain(self, timeout_s: float | None = None) -> None: ...

    @property
    def drain_expired(self) -> bool: ...


class NerEngine:
    def __init__(
        self,
        bundle: Bundle,
        session: OnnxSession,
        pipeline: Pipeline,
        batcher: MicroBatcher,
        max_text_chars: int,
        timeout_s: float,
        max_request_windows: int | None = None,
        cpu_workers: int = 2,
        max_texts: int = 64,
        on_decode: Callable[[int, float], None] | None = None,
        decode_batch_requests: int = 64,
    ) -> None:
        self.bundle = bundle
        self.session = session
        self.pipeline = pipeline
        self.batcher = batcher
        self.max_text_chars = max_text_chars
        self.max_request_windows = max_request_windows or batcher.max_queue
        self.max_texts = max_texts
        self.timeout_s = timeout_s
        self._cpu = ThreadPoolExecutor(max_workers=cpu_workers, thread_name_prefix="cpu")
        self._closed = False
        # Requests back from one inference batch are decoded together (their recursions side by side).
        self.decoder: DecodeBatcher[Finishing, list[list[Entity]]] = DecodeBatcher(
            pipeline.finish_many,
            self._offload,
            lambda jobs: sum(j.plan.tokens for j in jobs) <= _INLINE_TOKENS,
            max_jobs=decode_batch_requests,
            on_batch=on_decode,
        )
        defaults = pipeline.defaults
        self.info = ModelInfo(
            bundle.name,
            bundle.version,
            bundle.sha256,
            pipeline.labels,
            pipeline.window.max_length,
            pipeline.window.stride,
            defaults.strategy.value,
            defaults.decoding.value,
            session.provider,
            temperature=pipeline.temperature,
            heads=tuple({"name": h.name, "labels": list(h.scheme.entity_types)} for h in pipeline.heads),
            window_align=pipeline.window.align.value,
            consistency=defaults.consistency.value,
        )

    @staticmethod
    def build(
        bundle: Bundle,
        session: OnnxSession,
        pipeline: Pipeline,
        *,
        max_batch_size: int,
        max_batch_tokens: int,
        max_wait_s: float,
        max_queue: int,
        max_text_chars: int,
        timeout_s: float,
        max_request_windows: int | None = None,
        cpu_workers: int = 2,
        max_texts: int = 64,
        stall_s: float = 60.0,
        initial_tokens_per_s: float = 2_000.0,
        admission_headroom: float = 1.0,
        hooks: BatcherHooks | None = None,
        on_decode: Callable[[int, float], None] | None = None,
        decode_batch_requests: int = 64,
        lanes: int = 1,
    ) -> NerEngine:
        batcher = MicroBatcher(
            lambda rows: run_rows(session.run, rows, bundle.pad_id),
            max_batch_size,
            max_batch_tokens,
            max_wait_s,
            max_queue,
            hooks,
            stall_s=stall_s,
            initial_tokens_per_s=initial_tokens_per_s,
            headroom=admission_headroom,
            lanes=lanes,
        )
        return NerEngine(
            bundle,
            session,
            pipeline,
            batcher,
            max_text_chars,
            timeout_s,
            max_request_windows,
            cpu_workers,
            max_texts,
            on_decode,
            decode_batch_requests,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def warmup(self) -> None:
        """A full batch of full windows, synchronously: the first request does not pay for
        allocating the largest shapes, and admission starts from a measured drain rate."""
        filler = "Interleukin-2 activates NF-kappa B and STAT5 in human T cells. " * self.pipeline.window.max_length
        row = self.pipeline.plan([filler]).rows[0]
        ids, mask = pad_windows([row] * self.batcher.max_batch_size, self.bundle.pad_id)
        self.session.run(ids[:1], mask[:1])  # allocation
        started = time.monotonic()
        self.session.run(ids, mask)
        self.batcher.rate.observe(int(mask.sum()), time.monotonic() - started)

    def start(self) -> None:
        self.batcher.start()

    def alive(self) -> Health:
        return self.batcher.liveness()

    def ready(self) -> Health:
        return self.batcher.health()

    @property
    def queued_windows(self) -> int:
        return self.batcher.depth

    async def drain(self, timeout_s: float | None = None) -> None:
        await self.batcher.drain(timeout_s)
        self.close()

    @property
    def drain_expired(self) -> bool:
        return self.batcher.drain_expired

    @property
    def decodings(self) -> tuple[Decoding, ...]:
        return self.pipeline.decodings

    # -- requests ----------------------------------------------------------------------------
    def check_many(self, texts: Sequence[str], what: str) -> None:
        """Many texts (a gold set, a BioC collection's passages) go through in request-sized
        chunks, all of them within the queue's hard bound: refused up front, before any work."""
        bound = self._windows_bound(texts, what)
        if bound > self.batcher.max_queue:
            raise RequestTooLargeError(
                f"the {what}s may need up to {bound} windows; one call may use {self.batcher.max_queue}: send them in parts"
            )

    def _windows_bound(self, texts: Sequence[str], what: str) -> int:
        """Most windows ``texts`` can need, from characters alone; a text over the limit is 413."""
        for i, text in enumerate(texts):
            if len(text) > self.max_text_chars:
                raise TextTooLongError(f"{what} {i} has {len(text)} characters; the limit is {self.max_text_chars}")
        return sum(self.pipeline.window_bound(len(t)) for t in texts)

    async def _offload(self, inline: bool, fn: Callable[[], T]) -> T:
        if inline or self._closed:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self._cpu, fn)

    async def recognize(self, texts: Sequence[str], options: Options | None = None, timeout_s: float | None = None) -> Recognition:
        options = options or self.pipeline.defaults
        bound = self._windows_bound(texts, "text")
        if bound > self.max_request_windows:
            raise RequestTooLargeError(
                f"the texts may need up to {bound} windows ({sum(len(t) for t in texts)} characters); "
                f"one request may use {self.max_request_windows}: send less text per request"
            )
        clock = self.batcher.clock
        deadline = clock() + (timeout_s or self.timeout_s)
        self.batcher.precheck(deadline)
        plan: Plan = await self._offload(sum(len(t) for t in texts) <= _INLINE_CHARS, lambda: self.pipeline.plan(texts))
        results: list[WindowResult] = []
        if plan.rows:
            futures = self.batcher.submit(plan.rows, deadline)
            try:
                # The deadline covers inference too: a hung or slow batch answers 504, not never.
                results = list(await asyncio.wait_for(asyncio.gather(*futures), timeout=max(deadline - clock(), 0)))
            except TimeoutError:
                raise DeadlineExceededError("the request's deadline passed before its inference finished") from None
            finally:
                for future in futures:  # a cancelled request leaves nothing queued behind it
                    future.cancel()
        window_logits = [r.logits for r in results]
        try:  # and decoding: a request still waiting for it at its deadline is skipped, not decoded late
            entities = await asyncio.wait_for(self.decoder.submit(Finishing(plan, window_logits, options)), max(deadline - clock(), 0))
        except TimeoutError:
            raise DeadlineExceededError("the request's deadline passed before its answer was decoded") from None
        return Recognition(
            entities=entities,
            queued_s=max((r.queued_s for r in results), default=0.0),
            inference_s=covered_seconds({r.batch: (r.started, r.started + r.inference_s) for r in results}.values()),
            tokens=plan.tokens,
            windows=len(plan.rows),
            batches=tuple(sorted({r.batch for r in results})),
        )

    def options(
        self,
        strategy: Strategy | None = None,
        decoding: Decoding | None = None,
        min_score: float = 0.0,
        labels: Sequence[str] | None = None,
        alternatives: int = 0,
        heads: Sequence[str] | None = None,
        overlap: Overlap = Overlap.KEEP_ALL,
        consistency: Consistency | None = None,
    ) -> Options:
        """The model's defaults with a request's choices on top, checked once, before any text is
        read: what this model cannot do is refused up front, and ``recognize`` takes the result."""
        return self.pipeline.options(strategy, decoding, min_score, labels, alternatives, heads, overlap, consistency)

    def chunks(self, texts: Sequence[str]) -> list[range]:
        """Consecutive runs of texts that each fit one request's limits (count and window budget)."""
        limit = self.max_request_windows
        out: list[range] = []
        start = windows = 0
        for i, text in enumerate(texts):
            need = self.pipeline.window_bound(len(text))
            if i > start and (i - start >= self.max_texts or windows + need > limit):
                out.append(range(start, i))
                start, windows = i, 0
            windows += need
        if start < len(texts):
            out.append(range(start, len(texts)))
        return out

    def recognize_sync(self, texts: Sequence[str]) -> list[list[Entity]]:
        """The same pipeline without the batcher: for the startup self-check and ``bioner check``."""
        return self.pipeline.predict(texts, self.session.run, self.batcher.max_batch_size)

    def close(self) -> None:
        self._closed = True  # work still coming (requests whose last window just came back) runs inline
        self._cpu.shutdown(wait=False)
