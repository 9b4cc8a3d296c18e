"""Pure ASGI middleware: request id, total-time header, request metrics, body size limit.

Pure ASGI (not BaseHTTPMiddleware) so that it adds no task per request and does not interfere
with the route's disconnect detection.
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
_KNOWN_ROUTES = {"/ner", "/health", "/ready", "/model", "/metrics", "/docs", "/openapi.json", "/redoc"}
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


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
        request_id = given if _SAFE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        route = scope["path"] if scope["path"] in _KNOWN_ROUTES else "other"
        status_holder = {"status": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                elapsed = time.perf_counter() - started
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-total-time", f"{elapsed * 1000:.2f}".encode()))
                message["headers"] = headers
            await send(message)

        length = sent.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await self._too_large(send_wrapper, request_id)
        else:
            await self.app(scope, self._limited(receive), send_wrapper)
        elapsed = time.perf_counter() - started
        status = status_holder["status"]
        self.metrics.requests.labels(route, scope["method"], str(status)).inc()
        self.metrics.request_seconds.labels(route).observe(elapsed)
        log.debug("%s %s %s %d %.1fms", request_id, scope["method"], scope["path"], status, elapsed * 1000)

    def _limited(self, receive: Receive) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    # Chunked bodies without Content-Length: treat the excess as a disconnect.
                    return {"type": "http.disconnect"}
            return message

        return wrapped

    async def _too_large(self, send: Send, request_id: str) -> None:
        self.metrics.refused.labels("body_too_large").inc()
        await send_error(send, 413, "body_too_large", f"request body over {self.max_body_bytes} bytes", request_id)
