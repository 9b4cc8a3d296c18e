"""orjson-backed JSON response: for a batch of abstracts, serialisation must not dominate."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JSONBytesResponse(JSONResponse):
    """A JSONResponse (so OpenAPI documents the response models) rendered by orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)
