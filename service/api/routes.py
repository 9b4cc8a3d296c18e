"""Thin handlers: validate, call the engine, shape the answer. No try/except here."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from service.api.responses import JSONBytesResponse
from service.api.schemas import ErrorResponse, HealthOut, ModelInfoOut, NerBatchResponse, NerRequest, NerResponse, ReadyOut
from service.decoding.aggregate import Decoding, Entity, Strategy
from service.engine import Engine, Recognition
from service.errors import ClientGoneError, InvalidRequestError
from service.metrics import Metrics

router = APIRouter()
T = TypeVar("T")
_ERRORS: dict[int | str, dict[str, Any]] = {status: {"model": ErrorResponse} for status in (400, 401, 413, 422, 500, 503, 504)}


def _entity(e: Entity) -> dict[str, object]:
    return {"start": e.start, "end": e.end, "text": e.text, "label": e.label, "score": round(e.score, 4)}


async def until_disconnect(request: Request, work: Awaitable[T], poll_s: float = 0.1) -> T:
    """Run ``work``; if the client goes away first, cancel it so its queued windows are dropped."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=poll_s)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            raise ClientGoneError("client disconnected before the answer was ready")


def _observe(metrics: Metrics, result: Recognition, n_texts: int) -> None:
    metrics.texts.inc(n_texts)
    metrics.tokens.inc(result.tokens)
    metrics.queue_seconds.observe(result.queued_s)
    for entities in result.entities:
        for e in entities:
            metrics.entities.labels(e.label).inc()
            metrics.entity_score.labels(e.label).observe(e.score)


@router.post("/ner", response_model=NerResponse | NerBatchResponse, responses=_ERRORS, summary="Find entities in text")
async def ner(body: NerRequest, request: Request) -> Response:
    """Entities with exact character offsets into each sent text, labels and scores."""
    engine: Engine = request.app.state.engine
    settings = request.app.state.settings
    texts = [body.text] if body.text is not None else list(body.texts or [])
    if len(texts) > settings.max_texts_per_request:
        raise InvalidRequestError(f"{len(texts)} texts in one request; the limit is {settings.max_texts_per_request}")
    strategy = Strategy(body.aggregation_strategy) if body.aggregation_strategy else None
    decoding = Decoding(body.decoding) if body.decoding else None
    result = await until_disconnect(request, engine.recognize(texts, strategy, body.min_score, body.labels, decoding=decoding))
    _observe(request.app.state.metrics, result, len(texts))
    info = engine.info
    model = {"name": info.name, "version": info.version, "sha256": info.sha256}
    lists = [[_entity(e) for e in ents] for ents in result.entities]
    payload = {"entities": lists[0] if body.text is not None else lists, "model": model}
    headers = {
        "x-queue-time": f"{result.queued_s * 1000:.2f}",
        "x-inference-time": f"{result.inference_s * 1000:.2f}",
        "x-tokens": str(result.tokens),
        "x-windows": str(result.windows),
    }
    return JSONBytesResponse(payload, headers=headers)


@router.get("/health", response_model=HealthOut, summary="Liveness: the process answers")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready", response_model=ReadyOut, summary="Readiness: model loaded and warmed up", responses={503: {"model": ReadyOut}})
async def ready(request: Request) -> Response:
    state = request.app.state
    engine = getattr(state, "engine", None)
    if getattr(state, "ready", False) and engine is not None and engine.batcher.running:
        return JSONBytesResponse({"status": "ready", "model": engine.info.name})
    return JSONBytesResponse({"status": "not_ready"}, status_code=503)


@router.get("/model", response_model=ModelInfoOut, responses={401: {"model": ErrorResponse}}, summary="The loaded model and its limits")
async def model(request: Request) -> Response:
    info = request.app.state.engine.info
    return JSONBytesResponse({**info.__dict__, "labels": list(info.labels)})


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
