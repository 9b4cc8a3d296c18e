"""``create_app(settings)``: the lifespan loads the bundles, warms up, starts and drains their batchers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from service import __version__
from service.api.auth import ApiKeyMiddleware, install_security_schemes
from service.api.errors import install_error_handlers
from service.api.middleware import ChunkedBodyLimit, RequestContextMiddleware
from service.api.pages import install_pages
from service.api.responses import JSONBytesResponse
from service.api.routes import make_router
from service.api.schemas import request_model
from service.bundle_format import ServingConfig, pipeline_for
from service.decoding.pipeline import Pipeline
from service.decoding.windows import WindowConfig
from service.engine import Engine, NerEngine
from service.errors import BundleError
from service.metrics import Metrics
from service.registry import ModelRegistry
from service.runtime.bundle import Bundle, load_bundle
from service.runtime.golden import GoldenError, compare, read_golden
from service.runtime.session import OnnxSession
from service.settings import Settings
from service.workers import cores, inference_threads

log = logging.getLogger(__name__)


def build_registry(settings: Settings, metrics: Metrics) -> ModelRegistry:
    """Every configured model, loaded and checked before the server binds its port; a bad one
    refuses startup with one line that names it."""
    named = settings.named_models()
    if not named:
        engine = build_engine(settings, metrics)
        return ModelRegistry({engine.info.name: engine}, settings.default_model)
    engines: dict[str, NerEngine] = {}
    for name, path in named.items():
        try:
            engines[name] = build_engine(settings, metrics, path, name)
        except BundleError as exc:
            raise BundleError(f"model {name!r}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"model {name!r}: {exc}") from None
    return ModelRegistry(engines, settings.default_model)


def build_engine(settings: Settings, metrics: Metrics, path: Path | None = None, name: str | None = None) -> NerEngine:
    """Load and check everything that can fail before the server binds its port: the bundle at
    ``path`` (default: ``model_path``), served as ``name`` (default: the bundle's own name)."""
    bundle = load_bundle(path or settings.model_path)
    name = name or bundle.name
    session = OnnxSession(
        bundle.onnx_path,
        len(bundle.scheme),
        settings.provider,
        inference_threads(settings, cores()),
        settings.inter_op_threads,
        settings.graph_optimization,
        settings.thread_spinning,
    )
    session.check_reads(bundle.encoder.token_types, bundle.path)
    pipeline = make_pipeline(bundle, settings, name)
    window = pipeline.window
    largest = pipeline.window_bound(settings.max_text_chars)
    request_windows = settings.max_request_windows or largest
    if largest > request_windows or request_windows > settings.max_queue_windows:
        raise ValueError(
            f"a text of max_text_chars={settings.max_text_chars} characters may need {largest} windows of {window.max_length} "
            f"tokens; max_request_windows={request_windows} and max_queue_windows={settings.max_queue_windows} must both "
            "hold that: raise them or lower max_text_chars"
        )
    engine = NerEngine.build(
        bundle,
        session,
        pipeline,
        max_batch_size=settings.max_batch_size,
        max_batch_tokens=settings.max_batch_tokens,
        max_wait_s=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue_windows,
        max_text_chars=settings.max_text_chars,
        timeout_s=settings.request_timeout_s,
        max_request_windows=request_windows,
        cpu_workers=settings.cpu_workers,
        max_texts=settings.max_texts_per_request,
        stall_s=settings.stall_s,
        initial_tokens_per_s=settings.initial_tokens_per_s,
        admission_headroom=settings.admission_headroom,
        hooks=metrics.batcher_hooks(name),
        on_decode=metrics.decode_hook(name),
        decode_batch_requests=settings.decode_batch_requests,
        lanes=settings.inference_lanes,
    )
    limits = {
        "max_texts_per_request": settings.max_texts_per_request,
        "max_text_chars": settings.max_text_chars,
        "max_request_windows": request_windows,
        "max_queue_windows": settings.max_queue_windows,
        "request_timeout_s": settings.request_timeout_s,
    }
    engine.info = replace(engine.info, name=name, limits=limits)
    if settings.self_check:
        self_check(engine, metrics)
    metrics.describe_model(
        name,
        {
            "name": bundle.name,
            "version": bundle.version,
            "sha256": bundle.sha256,
            "provider": session.provider,
            "max_length": str(window.max_length),
        },
    )
    return engine


def make_pipeline(bundle: Bundle, settings: Settings, name: str | None = None) -> Pipeline:
    """The bundle's serving configuration with the settings' overrides on top, served as ``name``."""
    return pipeline_for(
        bundle.serving,
        bundle.encoder,
        bundle.scheme,
        bundle.pad_id,
        max_length=settings.max_length,
        stride=settings.stride,
        align=settings.window_align,
        strategy=settings.aggregation_strategy,
        decoding=settings.decoding,
        consistency=settings.consistency,
        name=name,
    )


def self_check(engine: NerEngine, metrics: Metrics) -> None:
    """Answer the bundle's golden texts and compare; a mismatch (or a broken file) is a warning,
    reported on ``/model`` and ``bioner_self_check_passed``, never a refusal to start."""
    try:
        golden = read_golden(engine.bundle.path)
    except GoldenError as exc:
        log.warning("self-check skipped: %s", exc)
        engine.info = replace(engine.info, self_check={"passed": False, "error": str(exc)})
        metrics.self_check.labels(engine.info.name).set(0)
        return
    if golden is None:
        return
    report = compare(golden, engine.recognize_sync)
    served, made = engine.pipeline.window, engine.bundle.serving.window
    overridden = {"served": window_fields(served), "bundle": window_fields(made)} if served != made else None
    decoding = decoding_override(engine.pipeline, engine.bundle.serving)
    engine.info = replace(
        engine.info,
        self_check=report.as_dict()
        | ({"window_override": overridden} if overridden else {})
        | ({"decoding_override": decoding} if decoding else {}),
    )
    metrics.self_check.labels(engine.info.name).set(1 if report.passed else 0)
    if report.passed:
        log.info(
            "self-check: %s answered %d golden texts as expected (max score difference %.1e)",
            engine.info.name,
            report.texts,
            report.max_score_diff,
        )
    else:
        log.warning(
            "self-check FAILED for %s on %s: %d of %d golden texts differ from the bundle's expected answers: %s",
            engine.info.name,
            report.cpu.get("model"),
            report.texts_differing,
            report.texts,
            "; ".join(report.differences[:3]),
        )
        if overridden:
            log.warning(
                "self-check: windows are overridden (%s served, the golden answers were made with the bundle's %s); "
                "spans near window edges are expected to differ",
                overridden["served"],
                overridden["bundle"],
            )
        if decoding:
            log.warning(
                "self-check: decoding defaults are overridden (%s served, the golden answers were made with the bundle's %s); "
                "labels and scores are expected to differ",
                decoding["served"],
                decoding["bundle"],
            )


def decoding_override(pipeline: Pipeline, serving: ServingConfig) -> dict[str, dict[str, str]] | None:
    """The served decoding defaults against the bundle's, where the settings changed them (the golden
    answers were made with the bundle's)."""
    defaults = pipeline.defaults
    served = {
        "aggregation_strategy": defaults.strategy.value,
        "decoding": defaults.decoding.value,
        "consistency": defaults.consistency.value,
    }
    made = {
        "aggregation_strategy": serving.strategy.value,
        "decoding": serving.default_decoding.value,
        "consistency": serving.consistency.value,
    }
    return {"served": served, "bundle": made} if served != made else None


def window_fields(window: WindowConfig) -> str:
    return f"max_length {window.max_length}, stride {window.stride}, align {window.align.value}"


def create_app(
    settings: Settings | None = None,
    engine: Engine | None = None,
    metrics: Metrics | None = None,
    registry: ModelRegistry | None = None,
) -> FastAPI:
    """The app; its lifespan builds the models from ``settings`` unless ``registry`` (or one
    ``engine``) is given already built."""
    settings = settings or Settings()
    metrics = metrics or Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        models = registry or (ModelRegistry({engine.info.name: engine}) if engine is not None else build_registry(settings, metrics))
        if settings.warmup:
            models.warmup()
        models.start()
        app.state.registry = models
        app.state.engine = models.get()  # the default model: what /model and older callers see
        app.state.ready = True
        metrics.ready.set(1)
        for name, current in models.items():
            info = current.info
            log.info("ready: model %s (%s) sha256 %s on %s%s", name, info.version, info.sha256[:12], info.provider, _default(models, name))
        try:
            yield
        finally:
            app.state.ready = False
            metrics.ready.set(0)
            log.info("draining %d queued windows", models.queued_windows)
            await models.drain(settings.drain_timeout_s)

    app = FastAPI(
        title="bioner",
        version=__version__,
        lifespan=lifespan,
        default_response_class=JSONBytesResponse,
        description="Biomedical named-entity recognition: entities with exact character offsets, labels and scores.",
        docs_url=None,  # /docs and /redoc come from install_pages, with the assets this package ships
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.ready = False
    app.state.retry_after_s = settings.retry_after_s
    app.state.draining = False
    install_error_handlers(app)
    app.include_router(make_router(request_model(settings.max_texts_per_request, settings.max_text_chars, settings.request_timeout_s)))
    install_pages(app, app.title)
    # Body limit: the largest request the window budget can admit is about one maximal text plus a
    # window's worth per other text; x12: an astral character escaped as a surrogate pair
    # (Python's json.dumps does that by default). Plus slack for the JSON around it.
    max_body = 12 * (settings.max_text_chars + (settings.max_texts_per_request - 1) * 4096) + 65_536
    app.add_middleware(ChunkedBodyLimit, max_body_bytes=max_body)  # innermost: behind the key check
    # Added last = outermost: request ids and metrics cover refused requests too.
    digests = settings.key_digests()
    if digests:
        log.info("API keys: %d loaded", len(digests))
        app.add_middleware(ApiKeyMiddleware, digests=digests, metrics=metrics, metrics_public=settings.metrics_public)
        install_security_schemes(app)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "X-Request-ID"],
        )
    app.add_middleware(RequestContextMiddleware, metrics=metrics, max_body_bytes=max_body)
    install_openapi_limits(app, settings)
    return app


def _default(models: ModelRegistry, name: str) -> str:
    return ", the default" if len(models.names) > 1 and name == models.default else ""


def install_openapi_limits(app: FastAPI, settings: Settings) -> None:
    """Put the loaded models' names and labels into the request schema (the limits are in the
    request model itself), so that every request the schema allows is one the service accepts.
    With several models the labels and decodings are those of any model: one a chosen model
    lacks is still a 422."""
    plain_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = plain_openapi()
        app.openapi_schema = None  # the plain generator caches; limits are added below
        fields = schema["components"]["schemas"]["NerRequest"]["properties"]
        models: ModelRegistry | None = getattr(app.state, "registry", None)
        if models is not None:
            labels = models.labels()
            fields["labels"]["items"]["enum"] = labels
            evaluate = schema["components"]["schemas"]["EvaluateRequest"]["properties"]
            evaluate["types"]["items"]["enum"] = labels
            # Only the decodings some model offers ('crf' needs a CRF model).
            decodings = dict.fromkeys(d.value for _, engine in models.items() for d in engine.decodings)
            schema["components"]["schemas"]["Decoding"]["enum"] = list(decodings)
            names = list(models.names)
            fields["model"]["enum"] = evaluate["model"]["enum"] = names
            for parameter in schema["paths"]["/annotate"]["post"]["parameters"]:
                if parameter["name"] == "model":
                    parameter["schema"] = {"type": "string", "enum": names, "title": "Model"}
            app.openapi_schema = schema  # complete: cache it
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
