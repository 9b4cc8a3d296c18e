"""The error taxonomy's one table: domain error -> HTTP status and one JSON shape.

Every error body is ``{"error": {"code", "message", "request_id"}}``. A 500 never carries
exception text: the message names the request id so operators can find the log line.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import errors
from service.api.responses import JSONBytesResponse

log = logging.getLogger(__name__)

STATUS: dict[type[errors.ServiceError], int] = {
    errors.InvalidRequestError: 422,
    errors.MalformedDocumentError: 400,
    errors.TextTooLongError: 413,
    errors.RequestTooLargeError: 413,
    errors.UnknownModelError: 404,
    errors.QueueFullError: 503,
    errors.DeadlineUnmeetableError: 503,
    errors.ShuttingDownError: 503,
    errors.DeadlineExceededError: 504,
    errors.InferenceError: 500,
    errors.ClientGoneError: 499,
}


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))


def error_response(request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONBytesResponse:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.refused.labels(code).inc()
    body = {"error": {"code": code, "message": message, "request_id": request_id(request)}}
    return JSONBytesResponse(body, status_code=status, headers=headers)


_MAX_PROBLEMS = 3  # an error body names the first few problems, never echoes the input


def _location(problem: Any) -> str:
    return ".".join(str(x) for x in problem.get("loc", ()) if x != "body") or "body"


def install_error_handlers(app: FastAPI) -> None:
    retry_after = str(getattr(app.state, "retry_after_s", 1))

    @app.exception_handler(errors.ServiceError)
    async def _service_error(request: Request, exc: errors.ServiceError) -> JSONBytesResponse:
        status = next((STATUS[c] for c in type(exc).__mro__ if c in STATUS), 500)  # subclasses map as their base
        headers = {"Retry-After": str(exc.retry_after_s or retry_after)} if status == 503 else None
        if status >= 500 and status != 503 and status != 504:
            log.error("request %s failed: %s", request_id(request), exc)
            return error_response(request, status, exc.code, f"inference failed; see server log for request {request_id(request)}")
        return error_response(request, status, exc.code, str(exc), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONBytesResponse:
        problems = exc.errors()
        if any(p.get("type") == "json_invalid" for p in problems):
            return error_response(request, 400, "malformed_json", "request body is not valid JSON")
        message = "; ".join(f"{_location(p)}: {p.get('msg')}" for p in problems[:_MAX_PROBLEMS])
        if len(problems) > _MAX_PROBLEMS:
            message += f"; and {len(problems) - _MAX_PROBLEMS} more"
        if any(p.get("type") == "string_too_long" and _location(p).startswith("text") for p in problems):
            return error_response(request, 413, "text_too_long", message)
        return error_response(request, 422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONBytesResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail), dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONBytesResponse:
        log.exception("request %s: unexpected error", request_id(request))
        return error_response(request, 500, "internal_error", f"internal error; see server log for request {request_id(request)}")
