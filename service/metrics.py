"""Prometheus collectors, in base units, on a registry owned by one app instance.

Buckets are chosen for this workload: requests take milliseconds to seconds; a batch holds up
to a few dozen windows of up to 512 tokens; entity scores live in [0, 1] and drift shows in
the lower buckets first.

Everything about inference carries a ``model`` label (the served name), since each model has its
own queue and batcher; HTTP-level series (requests, refusals by reason, readiness) do not.

With several worker processes (``workers``), ``PROMETHEUS_MULTIPROC_DIR`` is set before any of
them starts: every process writes its series to files there, and ``registry`` is a collector
that sums them, so a scrape of any worker (or of ``metrics_port``, served by the supervisor)
sees the whole service. Each gauge says how it combines across live workers: queue depths and
drain rates add up, the wait estimate is the worst, and ready or self-check is 1 only when every
worker's is. ``Info`` cannot be combined that way, so the model's facts are a gauge of labels
(the text format exposes an ``Info`` exactly so).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from service.batching import BatcherHooks, BatchStats
from service.workers import MULTIPROCESS_DIR

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
_ROWS = (1, 2, 4, 8, 12, 16, 24, 32, 64)
_REQUESTS = (1, 2, 4, 8, 16, 32, 64)
_TOKENS = (64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384)
_SCORES = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
_MODEL = ["model"]
MODEL_FACTS = ("name", "version", "sha256", "provider", "max_length")


def shared_registry() -> CollectorRegistry:
    """What every worker's series add up to (the multiprocess files), for one scrape."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


class Metrics:
    def __init__(self) -> None:
        own = CollectorRegistry(auto_describe=True)
        # several workers: the series go to the shared files anyway; a scrape reads all of them
        self.registry = shared_registry() if os.environ.get(MULTIPROCESS_DIR) else own
        r = own
        self.requests = Counter("bioner_requests_total", "HTTP requests by route and status", ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("bioner_request_duration_seconds", "HTTP request latency", ["route"], buckets=_LATENCY, registry=r)
        self.queue_seconds = Histogram(
            "bioner_queue_duration_seconds", "Time a request's windows waited in the queue", _MODEL, buckets=_LATENCY, registry=r
        )
        self.inference_seconds = Histogram(
            "bioner_inference_duration_seconds", "Time of one inference batch", _MODEL, buckets=_LATENCY, registry=r
        )
        self.batch_rows = Histogram("bioner_batch_size_windows", "Windows per inference batch", _MODEL, buckets=_ROWS, registry=r)
        self.batch_tokens = Histogram("bioner_batch_size_tokens", "Padded tokens per inference batch", _MODEL, buckets=_TOKENS, registry=r)
        self.queue_depth = Gauge(
            "bioner_queue_depth_windows", "Windows waiting for inference", _MODEL, registry=r, multiprocess_mode="livesum"
        )
        self.wait_estimate = Gauge(
            "bioner_queue_wait_estimate_seconds",
            "Time the queued and running windows need at the measured drain rate (the worst worker's)",
            _MODEL,
            registry=r,
            multiprocess_mode="livemax",
        )
        self.drain_rate = Gauge(
            "bioner_drain_rate_tokens_per_second",
            "Window tokens per second of inference, smoothed over recent batches",
            _MODEL,
            registry=r,
            multiprocess_mode="livesum",
        )
        self.decode_requests = Histogram(
            "bioner_decode_batch_requests", "Requests decoded together in one call", _MODEL, buckets=_REQUESTS, registry=r
        )
        self.decode_seconds = Histogram(
            "bioner_decode_duration_seconds", "One decode call: words, Viterbi, CRF marginals, spans", _MODEL, buckets=_LATENCY, registry=r
        )
        self.texts = Counter("bioner_texts_total", "Texts processed", _MODEL, registry=r)
        self.tokens = Counter("bioner_tokens_total", "Subword tokens processed (without special tokens)", _MODEL, registry=r)
        self.windows = Counter("bioner_windows_total", "Windows sent to the model", _MODEL, registry=r)
        self.padding_tokens = Counter("bioner_padding_tokens_total", "Padded positions computed for nothing", _MODEL, registry=r)
        self.entities = Counter("bioner_entities_total", "Entities returned, by model and type", ["model", "label"], registry=r)
        self.entity_score = Histogram(
            "bioner_entity_score", "Entity confidence by model and type (watch for drift)", ["model", "label"], buckets=_SCORES, registry=r
        )
        self.refused = Counter("bioner_requests_refused_total", "Requests answered with an error, by reason", ["reason"], registry=r)
        self.dropped = Counter(
            "bioner_windows_dropped_total", "Windows refused or dropped by a model's batcher, by reason", ["model", "reason"], registry=r
        )
        self.model_info = Gauge("bioner_model_info", "A loaded model", [*_MODEL, *MODEL_FACTS], registry=r, multiprocess_mode="livemax")
        self.ready = Gauge(
            "bioner_ready", "1 when the model is loaded and warmed up (every worker)", registry=r, multiprocess_mode="livemin"
        )
        self.self_check = Gauge(
            "bioner_self_check_passed",
            "1 when the bundle's golden texts were answered as expected at startup, 0 if not (every worker)",
            _MODEL,
            registry=r,
            multiprocess_mode="livemin",
        )

    def describe_model(self, model: str, facts: dict[str, str]) -> None:
        """``bioner_model_info``: the served name and ``MODEL_FACTS`` of the bundle behind it."""
        self.model_info.labels(model, *(facts[k] for k in MODEL_FACTS)).set(1)

    def decode_hook(self, model: str) -> Callable[[int, float], None]:
        """For ``model``'s decode batcher: how many requests each decode call took, and how long."""
        requests, seconds = self.decode_requests.labels(model), self.decode_seconds.labels(model)

        def on_decode(n: int, elapsed: float) -> None:
            requests.observe(n)
            seconds.observe(elapsed)

        return on_decode

    def batcher_hooks(self, model: str) -> BatcherHooks:
        """Callbacks for ``model``'s batcher; its series exist (at zero) from the start, so a
        dashboard shows an idle model rather than none."""
        rows, tokens, seconds = self.batch_rows.labels(model), self.batch_tokens.labels(model), self.inference_seconds.labels(model)
        windows, padding = self.windows.labels(model), self.padding_tokens.labels(model)
        depth, wait, rate = self.queue_depth.labels(model), self.wait_estimate.labels(model), self.drain_rate.labels(model)
        self.texts.labels(model)
        self.tokens.labels(model)
        self.queue_seconds.labels(model)

        def on_batch(stats: BatchStats) -> None:
            rows.observe(stats.rows)
            tokens.observe(stats.padded_tokens)
            seconds.observe(stats.seconds)
            windows.inc(stats.rows)
            padding.inc(stats.padded_tokens - stats.real_tokens)

        def on_estimate(wait_s: float, tokens_per_s: float) -> None:
            wait.set(wait_s)
            rate.set(tokens_per_s)

        return BatcherHooks(
            on_batch=on_batch,
            on_drop=lambda reason, n: self.dropped.labels(model, reason).inc(n),
            on_queue_depth=depth.set,
            on_estimate=on_estimate,
        )
