"""orjson-backed JSON response: for a batch of abstracts, serialisation must not dominate."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse
from starlette.types import Send


class JSONBytesResponse(JSONResponse):
    """A JSONResponse (so OpenAPI documents the response models) rendered by orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


async def send_error(
    send: Send, status: int, code: str, message: str, request_id: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> None:
    """The error JSON shape, sent straight from ASGI middleware (before any route runs)."""
    body = orjson.dumps({"error": {"code": code, "message": message, "request_id": request_id}})
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": body})
