"""NerEngine: texts -> windows -> micro-batcher -> stitched logits -> entities.

The only thing route handlers call. It owns the bundle, the ONNX session and the batcher, and
reports per-request timings so responses can carry them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from service.batching import BatcherHooks, MicroBatcher, WindowResult
from service.decoding.aggregate import Decoding, Entity, Strategy, entities_from_scores, softmax
from service.decoding.calibration import calibrated_probs
from service.decoding.predict import WindowConfig, pad_windows, predict_texts, windows_for
from service.decoding.windows import Encoded, plan_windows, stitch
from service.errors import DeadlineExceededError, InvalidRequestError, RequestTooLargeError, TextTooLongError
from service.runtime.bundle import Bundle
from service.runtime.session import OnnxSession

T = TypeVar("T")
# Work this small stays on the event loop (a thread hop costs more); anything bigger goes to the
# engine's bounded CPU pool, so /health answers while a 100,000-character text is tokenised.
_INLINE_CHARS = 1_000
_INLINE_TOKENS = 256


def window_bound(n_chars: int, window: WindowConfig, n_special: int) -> int:
    """Most windows a text of ``n_chars`` characters can need: every subword covers at least one
    character, so the token count is at most the character count. Cheap, and computed before
    any tokenising, so a request that could never fit is refused without spending CPU on it."""
    if n_chars == 0:
        return 0
    return len(plan_windows(n_chars, window.content_length(n_special), window.stride))


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


class Engine(Protocol):
    """The seam between HTTP and inference: routes know only this."""

    info: ModelInfo

    async def recognize(
        self,
        texts: Sequence[str],
        strategy: Strategy | None = None,
        min_score: float = 0.0,
        labels: Sequence[str] | None = None,
        timeout_s: float | None = None,
        decoding: Decoding | None = None,
        alternatives: int = 0,
    ) -> Recognition: ...

    def chunks(self, texts: Sequence[str]) -> list[range]: ...

    def check_evaluation(self, texts: Sequence[str]) -> None: ...


class NerEngine:
    def __init__(
        self,
        bundle: Bundle,
        session: OnnxSession,
        window: WindowConfig,
        strategy: Strategy,
        batcher: MicroBatcher,
        max_text_chars: int,
        timeout_s: float,
        decoding: Decoding = Decoding.CONSTRAINED,
        max_request_windows: int | None = None,
        cpu_workers: int = 2,
        max_texts: int = 64,
    ) -> None:
        self.bundle = bundle
        self.session = session
        self.window = window
        self.strategy = strategy
        self.decoding = decoding
        self.batcher = batcher
        self.max_text_chars = max_text_chars
        self.max_request_windows = max_request_windows or batcher.max_queue
        self.max_texts = max_texts
        self.timeout_s = timeout_s
        self._cpu = ThreadPoolExecutor(max_workers=cpu_workers, thread_name_prefix="cpu")
        self.info = ModelInfo(
            bundle.name,
            bundle.version,
            bundle.sha256,
            bundle.scheme.entity_types,
            window.max_length,
            window.stride,
            strategy.value,
            decoding.value,
            session.provider,
            temperature=bundle.temperature,
        )

    @staticmethod
    def build(
        bundle: Bundle,
        session: OnnxSession,
        window: WindowConfig,
        strategy: Strategy,
        *,
        decoding: Decoding,
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
    ) -> NerEngine:
        def run_rows(rows: Sequence[np.ndarray]) -> list[np.ndarray]:
            ids, mask = pad_windows(rows, bundle.pad_id)
            logits = session.run(ids, mask)
            return [logits[i, : len(row)] for i, row in enumerate(rows)]

        batcher = MicroBatcher(
            run_rows,
            max_batch_size,
            max_batch_tokens,
            max_wait_s,
            max_queue,
            hooks,
            stall_s=stall_s,
            initial_tokens_per_s=initial_tokens_per_s,
            headroom=admission_headroom,
        )
        return NerEngine(
            bundle, session, window, strategy, batcher, max_text_chars, timeout_s, decoding, max_request_windows, cpu_workers, max_texts
        )

    def warmup(self) -> None:
        """A full batch of full windows, synchronously: the first request does not pay for
        allocating the largest shapes, and admission starts from a measured drain rate."""
        encoder = self.bundle.encoder
        filler = "Interleukin-2 activates NF-kappa B and STAT5 in human T cells. " * self.window.max_length
        encoded = encoder.encode(filler)
        span = windows_for(encoder, encoded, self.window)[0]
        rows = [encoder.window_ids(encoded, span)] * self.batcher.max_batch_size
        ids, mask = pad_windows(rows, self.bundle.pad_id)
        self.session.run(ids[:1], mask[:1])  # allocation
        started = time.monotonic()
        self.session.run(ids, mask)
        self.batcher.rate.observe(int(mask.sum()), time.monotonic() - started)

    def check_request(self, texts: Sequence[str], labels: Sequence[str] | None, decoding: Decoding | None = None) -> None:
        if decoding is Decoding.CRF and self.bundle.transitions is None:
            raise InvalidRequestError("decoding 'crf' needs a model trained with a CRF head; this one has none")
        bound = self._windows_bound(texts, "text")
        unknown = sorted(set(labels or ()) - set(self.info.labels))
        if unknown:
            raise InvalidRequestError(f"unknown labels {unknown}; this model knows {list(self.info.labels)}")
        if bound > self.max_request_windows:
            raise RequestTooLargeError(
                f"the texts may need up to {bound} windows ({sum(len(t) for t in texts)} characters); "
                f"one request may use {self.max_request_windows}: send less text per request"
            )

    def check_evaluation(self, texts: Sequence[str]) -> None:
        """A gold set is scored in request-sized chunks, all of it within the queue's hard bound."""
        bound = self._windows_bound(texts, "document")
        if bound > self.batcher.max_queue:
            raise RequestTooLargeError(
                f"the documents may need up to {bound} windows; one evaluation may use {self.batcher.max_queue}: "
                "score the set in parts and add the counts"
            )

    def _windows_bound(self, texts: Sequence[str], what: str) -> int:
        """Most windows ``texts`` can need, from characters alone; a text over the limit is 413."""
        for i, text in enumerate(texts):
            if len(text) > self.max_text_chars:
                raise TextTooLongError(f"{what} {i} has {len(text)} characters; the limit is {self.max_text_chars}")
        return sum(window_bound(len(t), self.window, self.bundle.encoder.n_special) for t in texts)

    async def _offload(self, inline: bool, fn: Callable[[], T]) -> T:
        if inline:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self._cpu, fn)

    async def recognize(
        self,
        texts: Sequence[str],
        strategy: Strategy | None = None,
        min_score: float = 0.0,
        labels: Sequence[str] | None = None,
        timeout_s: float | None = None,
        decoding: Decoding | None = None,
        alternatives: int = 0,
    ) -> Recognition:
        self.check_request(texts, labels, decoding)
        clock = self.batcher.clock
        deadline = clock() + (timeout_s or self.timeout_s)
        self.batcher.precheck(deadline)
        encoder = self.bundle.encoder
        encoded = await self._offload(sum(len(t) for t in texts) <= _INLINE_CHARS, lambda: encoder.encode_batch(texts))
        plans = [windows_for(encoder, e, self.window) if len(e) else [] for e in encoded]
        rows = [encoder.window_ids(e, span) for e, plan in zip(encoded, plans) for span in plan]
        results: list[WindowResult] = []
        if rows:
            futures = self.batcher.submit(rows, deadline)
            try:
                # The deadline covers inference too: a hung or slow batch answers 504, not never.
                results = list(await asyncio.wait_for(asyncio.gather(*futures), timeout=max(deadline - clock(), 0)))
            except TimeoutError:
                raise DeadlineExceededError("the request's deadline passed before its inference finished") from None
            finally:
                for future in futures:  # a cancelled request leaves nothing queued behind it
                    future.cancel()
        n_tokens = sum(len(e) for e in encoded)
        entities = await self._offload(
            n_tokens <= _INLINE_TOKENS,
            lambda: self._decode(
                texts, encoded, plans, results, strategy or self.strategy, min_score, labels, decoding or self.decoding, alternatives
            ),
        )
        return Recognition(
            entities=entities,
            queued_s=max((r.queued_s for r in results), default=0.0),
            inference_s=sum({r.batch: r.inference_s for r in results}.values()),
            tokens=n_tokens,
            windows=len(rows),
            batches=tuple(sorted({r.batch for r in results})),
        )

    def chunks(self, texts: Sequence[str]) -> list[range]:
        """Consecutive runs of texts that each fit one request's limits (count and window budget)."""
        limit = self.max_request_windows
        n_special = self.bundle.encoder.n_special
        out: list[range] = []
        start = windows = 0
        for i, text in enumerate(texts):
            need = window_bound(len(text), self.window, n_special)
            if i > start and (i - start >= self.max_texts or windows + need > limit):
                out.append(range(start, i))
                start, windows = i, 0
            windows += need
        if start < len(texts):
            out.append(range(start, len(texts)))
        return out

    def recognize_sync(self, texts: Sequence[str]) -> list[list[Entity]]:
        """The same decoding without the batcher: for the startup self-check and ``bioner check``."""
        bundle = self.bundle
        return predict_texts(
            texts,
            bundle.encoder,
            self.session.run,
            bundle.scheme,
            self.window,
            self.strategy,
            self.batcher.max_batch_size,
            bundle.pad_id,
            self.decoding,
            bundle.transitions,
            bundle.temperature,
        )

    def close(self) -> None:
        self._cpu.shutdown(wait=False)

    def _decode(
        self,
        texts: Sequence[str],
        encoded: Sequence[Encoded],
        plans: Sequence[Sequence[object]],
        results: Sequence[WindowResult],
        strategy: Strategy,
        min_score: float,
        labels: Sequence[str] | None,
        decoding: Decoding,
        alternatives: int = 0,
    ) -> list[list[Entity]]:
        n_prefix = len(self.bundle.encoder.prefix_ids)
        keep = set(labels) if labels else None
        out: list[list[Entity]] = []
        cursor = 0
        for text, enc, plan in zip(texts, encoded, plans):
            if not plan:
                out.append([])
                continue
            window_logits = [
                results[cursor + k].logits[n_prefix : n_prefix + (span.end - span.start)]  # type: ignore[attr-defined]
                for k, span in enumerate(plan)
            ]
            cursor += len(plan)
            logits = stitch(len(enc), plan, window_logits).astype(np.float32)  # type: ignore[arg-type]
            bundle = self.bundle
            found = entities_from_scores(
                text,
                enc.offsets,
                enc.word_ids,
                softmax(logits),
                bundle.scheme,
                strategy,
                decoding,
                bundle.transitions,
                calibrated_probs(logits, bundle.temperature),
                alternatives,
            )
            out.append([e for e in found if e.score >= min_score and (keep is None or e.label in keep)])
        return out
