"""Pure ASGI middleware: request id, total-time header, request metrics, body size limit.

Pure ASGI (not BaseHTTPMiddleware) so that it adds no task per request and does not interfere
with the route's disconnect detection. ``RequestContextMiddleware`` is the outermost of ours
(only Starlette's own error middleware is outside it), so it is also where an exception nothing
else caught becomes a 500 that still carries the request id and is counted.
``ChunkedBodyLimit`` sits innermost, behind the API-key check, so that a body without
Content-Length is only read (bounded) for callers that are allowed in.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.api.responses import send_error
from service.metrics import Metrics

log = logging.getLogger("service.access")
_KNOWN_ROUTES = {"/ner", "/annotate", "/evaluate", "/health", "/ready", "/model", "/metrics", "/docs", "/openapi.json", "/redoc"}
_KNOWN_METHODS = {"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"}
_SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class BodyTooLarge(Exception):
    pass


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = dict(scope.get("headers") or [])
        given = sent.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _SAFE_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        route = scope["path"] if scope["path"] in _KNOWN_ROUTES else "other"
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "other"
        response = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                response["status"], response["started"] = message["status"], True
                elapsed = time.perf_counter() - started
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-total-time", f"{elapsed * 1000:.2f}".encode()))
                message["headers"] = headers
            await send(message)

        try:
            length = sent.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                raise BodyTooLarge
            await self.app(scope, receive, send_wrapper)
        except BodyTooLarge:
            self.metrics.refused.labels("body_too_large").inc()
            await send_error(send_wrapper, 413, "body_too_large", f"request body over {self.max_body_bytes} bytes", request_id)
        except Exception:  # noqa: BLE001 - the last line of defence: answer, count, log once
            log.exception("request %s: unhandled error", request_id)
            if not response["started"]:
                self.metrics.refused.labels("internal_error").inc()
                message = f"internal error; see server log for request {request_id}"
                await send_error(send_wrapper, 500, "internal_error", message, request_id)
        elapsed = time.perf_counter() - started
        status = response["status"]
        self.metrics.requests.labels(route, method, str(status)).inc()
        self.metrics.request_seconds.labels(route).observe(elapsed)
        log.debug("%s %s %s %d %.1fms", request_id, method, scope["path"], status, elapsed * 1000)


class ChunkedBodyLimit:
    """Read a body sent without Content-Length (chunked) up to the limit before any route runs,
    then replay it: over the limit is 413, as with a declared length, not a cut-off body."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = any(name == b"content-length" for name, _ in scope.get("headers") or [])
        if scope["type"] == "http" and not declared and scope["method"] in ("POST", "PUT", "PATCH"):
            receive = await self._buffered(receive)
        await self.app(scope, receive, send)

    async def _buffered(self, receive: Receive) -> Receive:
        """Read a body without Content-Length up to the limit, then replay it to the app."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first: Message = message
                break
            seen += len(message.get("body", b""))
            if seen > self.max_body_bytes:
                raise BodyTooLarge
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return first
            return await receive()

        return replay
