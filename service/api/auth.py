"""Optional API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every configured
digest (no early exit), so timing reveals neither a key nor how many match. Keys are never
logged: only their absence or mismatch is counted.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.responses import send_error
from service.metrics import Metrics

OPEN_ROUTES = {"/health", "/ready"}


def presented_key(headers: dict[bytes, bytes]) -> str | None:
    auth = headers.get(b"authorization", b"").decode("latin-1")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    key = headers.get(b"x-api-key")
    return key.decode("latin-1").strip() if key else None


def key_is_valid(key: str | None, digests: list[bytes]) -> bool:
    presented = hashlib.sha256((key or "").encode()).digest()
    matched = False
    for digest in digests:
        matched |= hmac.compare_digest(presented, digest)
    return matched and key is not None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, digests: list[bytes], metrics: Metrics, metrics_public: bool) -> None:
        self.app = app
        self.digests = digests
        self.metrics = metrics
        self.open_routes = OPEN_ROUTES | ({"/metrics"} if metrics_public else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_routes or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if key_is_valid(presented_key(dict(scope.get("headers") or [])), self.digests):
            await self.app(scope, receive, send)
            return
        self.metrics.refused.labels("unauthorized").inc()
        request_id = scope.get("state", {}).get("request_id", "-")
        message = "a valid API key is required (Authorization: Bearer or X-API-Key)"
        await send_error(send, 401, "unauthorized", message, request_id, ((b"www-authenticate", b'Bearer realm="bioner"'),))
