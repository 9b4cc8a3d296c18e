"""Thin handlers: validate, call the engine, shape the answer. No try/except here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response
from starlette.types import Receive

from service.api.responses import JSONBytesResponse
from service.api.schemas import (
    ErrorResponse,
    EvaluateRequest,
    EvaluateResponse,
    HealthOut,
    ModelEntryOut,
    ModelInfoOut,
    NerBatchResponse,
    NerRequest,
    NerResponse,
    ReadyOut,
)
from service.corpora.load import parse_corpus, split_dev
from service.corpora.scoring import score_documents
from service.decoding.aggregate import Entity
from service.decoding.pipeline import Options
from service.engine import Engine, Recognition
from service.errors import ClientGoneError, InvalidRequestError, ShuttingDownError
from service.metrics import Metrics
from service.registry import ModelRegistry, heads

T = TypeVar("T")
# How a model cuts text into windows, as /models and /evaluate report it.
WINDOW_FIELDS = ("max_length", "stride", "window_align")
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 422, 500, 503, 504)}


def _entity(e: Entity, alternatives: bool = False) -> dict[str, object]:
    out: dict[str, object] = {
        "start": e.start,
        "end": e.end,
        "text": e.text,
        "label": e.label,
        "score": round(e.score, 4),
        "source": e.source,
    }
    if alternatives:
        out["alternatives"] = [{"label": label, "score": round(score, 4)} for label, score in e.alternatives]
    return out


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (the body is already read, so nothing else arrives)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; if the client goes away first, cancel it so its queued windows are dropped.

    One waiter on the ASGI receive channel per request, woken only by the disconnect itself.
    """
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise ClientGoneError("client disconnected before the answer was ready")
    finally:  # also when this handler is cancelled: nothing of the request stays queued
        task.cancel()
        gone.cancel()


def _observe(metrics: Metrics, model: str, result: Recognition, n_texts: int) -> None:
    metrics.texts.labels(model).inc(n_texts)
    metrics.tokens.labels(model).inc(result.tokens)
    metrics.queue_seconds.labels(model).observe(result.queued_s)
    for entities in result.entities:
        for e in entities:
            metrics.entities.labels(model, e.label).inc()
            metrics.entity_score.labels(model, e.label).observe(e.score)


def engine_for(request: Request, model: str | None) -> Engine:
    """The engine of the model a request names (the default model's when it names none):
    404 ``unknown_model`` for a name not loaded, 503 once the service is draining."""
    if getattr(request.app.state, "draining", False):
        raise ShuttingDownError("the service is shutting down")
    models: ModelRegistry = request.app.state.registry
    return models.get(model)


async def ner(body: NerRequest, request: Request) -> Response:
    """Entities with exact character offsets into each sent text, labels and scores."""
    engine = engine_for(request, body.model)
    texts = [body.text] if body.text is not None else list(body.texts or [])
    options = engine.options(
        body.aggregation_strategy, body.decoding, body.min_score, body.labels, body.alternatives, body.heads, body.overlap, body.consistency
    )
    work = engine.recognize(texts, options, timeout_s=body.timeout)
    result = await until_disconnect(request, work)
    _observe(request.app.state.metrics, engine.info.name, result, len(texts))
    info = engine.info
    model = {"name": info.name, "version": info.version, "sha256": info.sha256}
    lists = [[_entity(e, body.alternatives > 0) for e in ents] for ents in result.entities]
    payload = {"entities": lists[0] if body.text is not None else lists, "model": model}
    headers = {
        "x-queue-time": f"{result.queued_s * 1000:.2f}",
        "x-inference-time": f"{result.inference_s * 1000:.2f}",
        "x-tokens": str(result.tokens),
        "x-windows": str(result.windows),
    }
    return JSONBytesResponse(payload, headers=headers)


async def recognize_many(request: Request, engine: Engine, texts: list[str], options: Options) -> list[list[Entity]]:
    """Many texts, one request's worth at a time, through the same batcher as ``/ner`` (so a
    large call shares the queue fairly instead of flooding it); checked with ``check_many`` first."""
    found: list[list[Entity]] = []
    metrics: Metrics = request.app.state.metrics
    for chunk in engine.chunks(texts):
        work = engine.recognize(texts[chunk.start : chunk.stop], options)
        result = await until_disconnect(request, work)
        _observe(metrics, engine.info.name, result, len(chunk))
        found.extend(result.entities)
    return found


async def evaluate(body: EvaluateRequest, request: Request) -> Response:
    """The running model's strict span precision, recall and F1 on your gold annotations, per type,
    micro and macro: the figures ``bioner evaluate`` computes on the same data and model."""
    engine = engine_for(request, body.model)
    chosen = engine.options(body.aggregation_strategy, body.decoding, consistency=body.consistency)  # refused before the gold is read
    brat = [(d.id, d.text, d.ann) for d in body.documents or []]
    try:  # parsing and scoring a few MB of gold leave the event loop
        docs = await asyncio.to_thread(parse_corpus, body.format, body.content or "", brat, body.tag_map, body.separator)
    except (ValueError, KeyError, TypeError, IndexError) as exc:  # whatever malformed gold raises
        raise InvalidRequestError(f"gold data unreadable: {type(exc).__name__}: {exc}") from None
    if body.dev_fraction and docs:
        _, docs = split_dev(docs, body.dev_fraction, body.seed)
    texts = [d.text for d in docs]
    engine.check_many(texts, "document")
    predicted = await recognize_many(request, engine, texts, chosen)
    report, _, _ = await asyncio.to_thread(score_documents, docs, predicted, body.types)
    info = engine.info
    settings: dict[str, object] = {k: getattr(info, k) for k in WINDOW_FIELDS}  # what scored: the request's choices over the model's
    settings |= {"aggregation_strategy": chosen.strategy.value, "decoding": chosen.decoding.value, "consistency": chosen.consistency.value}
    settings["provider"] = info.provider
    model = {"name": info.name, "version": info.version, "sha256": info.sha256}
    return JSONBytesResponse({**report, "documents": len(docs), "model": model, "settings": settings})


async def health(request: Request) -> Response:
    models: ModelRegistry | None = getattr(request.app.state, "registry", None)
    alive = models.alive() if models is not None else None
    if alive is not None and not alive.ok:  # a stopped or hung worker: only a restart cures it
        return JSONBytesResponse({"status": "unhealthy", "reason": alive.reason}, status_code=503)
    return JSONBytesResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    state = request.app.state
    models: ModelRegistry | None = getattr(state, "registry", None)
    if models is None or not getattr(state, "ready", False):
        return JSONBytesResponse({"status": "not_ready", "reason": "starting"}, status_code=503)
    if getattr(state, "draining", False):
        return JSONBytesResponse({"status": "not_ready", "reason": "draining"}, status_code=503)
    health = models.ready()  # every model: one that cannot serve takes the replica out of rotation
    if not health.ok:
        return JSONBytesResponse({"status": "not_ready", "reason": health.reason}, status_code=503)
    return JSONBytesResponse({"status": "ready", "model": models.default})


async def model(request: Request) -> Response:
    info = request.app.state.engine.info
    return JSONBytesResponse({**info.__dict__, "labels": list(info.labels), "heads": list(info.heads)})


async def list_models(request: Request) -> Response:
    """Every loaded model: the name requests send as ``model``, version, digest, heads, labels,
    window and provider; ``default`` marks the one requests without ``model`` get."""
    models: ModelRegistry = request.app.state.registry
    listed = []
    for name, engine in models.items():
        info = engine.info
        entry: dict[str, object] = {"name": name, "default": name == models.default, "version": info.version, "sha256": info.sha256}
        entry["heads"] = heads(name, info)
        entry["labels"] = list(info.labels)
        entry.update({k: getattr(info, k) for k in (*WINDOW_FIELDS, "provider", "decoding", "aggregation_strategy", "consistency")})
        listed.append(entry)
    return JSONBytesResponse(listed)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def make_router(body_model: type[NerRequest]) -> APIRouter:
    """The routes, with ``/ner``'s body validated by ``body_model`` (the configured limits)."""
    router = APIRouter()

    async def ner_route(body: NerRequest, request: Request) -> Response:
        return await ner(body, request)

    # FastAPI reads the body's model from the annotation: this app's limits live in that model.
    ner_route.__annotations__ = {**ner_route.__annotations__, "body": body_model}
    ner_route.__doc__ = ner.__doc__
    router.add_api_route(
        "/ner",
        ner_route,
        name="ner",
        methods=["POST"],
        response_model=NerResponse | NerBatchResponse,
        responses=_ERRORS,
        summary="Find entities in text",
    )
    router.add_api_route(
        "/evaluate",
        evaluate,
        methods=["POST"],
        response_model=EvaluateResponse,
        responses=_ERRORS,
        summary="Score the running model on your gold annotations",
    )
    from service.api.documents import OPENAPI, annotate  # it builds on recognize_many, defined here

    router.add_api_route(
        "/annotate",
        annotate,
        methods=["POST"],
        responses=_ERRORS,
        openapi_extra=OPENAPI,
        summary="Annotate documents: BioC XML/JSON, PubTator or JSON Lines in, the same format out",
    )
    router.add_api_route(
        "/health",
        health,
        methods=["GET"],
        response_model=HealthOut,
        summary="Liveness: the process answers and its inference worker is neither stopped nor hung",
        responses={503: {"model": HealthOut}},
    )
    router.add_api_route(
        "/ready",
        ready,
        methods=["GET"],
        response_model=ReadyOut,
        summary="Readiness: model loaded, warmed up, inference progressing, not draining",
        responses={503: {"model": ReadyOut}},
    )
    router.add_api_route(
        "/model",
        model,
        methods=["GET"],
        response_model=ModelInfoOut,
        responses={401: {"model": ErrorResponse}},
        summary="The default model, its limits and its self-check",
    )
    router.add_api_route(
        "/models",
        list_models,
        methods=["GET"],
        response_model=list[ModelEntryOut],
        responses={401: {"model": ErrorResponse}},
        summary="Every loaded model, with the name a request sends as `model`",
    )
    router.add_api_route("/metrics", metrics, methods=["GET"], summary="Prometheus metrics", include_in_schema=False)
    return router
