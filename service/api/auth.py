"""Optional API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

Keys are compared as SHA-256 digests with ``hmac.compare_digest`` against every configured
digest (no early exit), so timing reveals neither a key nor how many match. Keys are never
logged: only their absence or mismatch is counted.

Open without a key: ``/health`` and ``/ready`` (probes), and the pages with their static files
and ``/openapi.json`` (``pages.py``): they hold no data, and the docs page must read the schema
before anyone can press its Authorize button. Every route that answers with data needs a key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.pages import PUBLIC_PATHS, PUBLIC_PREFIX
from service.api.responses import send_error
from service.metrics import Metrics

OPEN_ROUTES = {"/health", "/ready"}
# The two ways to send a key, as OpenAPI security schemes (either one is enough).
SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "One of the service's API keys."},
    "Bearer": {"type": "http", "scheme": "bearer", "description": "The same key as `Authorization: Bearer <key>`."},
}


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
        self.open_routes = OPEN_ROUTES | PUBLIC_PATHS | ({"/metrics"} if metrics_public else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "OPTIONS" or self.is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        if key_is_valid(presented_key(dict(scope.get("headers") or [])), self.digests):
            await self.app(scope, receive, send)
            return
        self.metrics.refused.labels("unauthorized").inc()
        request_id = scope.get("state", {}).get("request_id", "-")
        message = "a valid API key is required (Authorization: Bearer or X-API-Key)"
        await send_error(send, 401, "unauthorized", message, request_id, ((b"www-authenticate", b'Bearer realm="bioner"'),))

    def is_open(self, path: str) -> bool:
        # ".." never reaches a route or a file (StaticFiles refuses it too); refused here all the same.
        return path in self.open_routes or (path.startswith(PUBLIC_PREFIX) and "/.." not in path)


def install_security_schemes(app: FastAPI) -> None:
    """State the key requirement in the OpenAPI schema, so Swagger UI's Authorize button sends the
    key with "Try it out": every operation needs one of ``SECURITY_SCHEMES``, except the open
    probes. Installed only when keys are configured; the schema is otherwise left as it is."""
    plain: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        schema = plain()
        schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        schema["security"] = [{name: []} for name in SECURITY_SCHEMES]
        for path, operations in schema.get("paths", {}).items():
            if path in OPEN_ROUTES:
                for operation in operations.values():
                    operation["security"] = []
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
