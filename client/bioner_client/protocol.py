"""The wire format, written once for both clients: request bodies in, typed results out."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import httpx

from bioner_client.errors import BionerError, PayloadTooLarge, from_response, retry_after
from bioner_client.models import Entity, ModelRef, Recognition
from bioner_client.retry import RetryPolicy

_OPTIONS = {"labels", "min_score", "aggregation_strategy", "decoding", "alternatives", "consistency"}


def payload(texts: Sequence[str], options: dict[str, Any], server_timeout_s: float | None) -> dict[str, Any]:
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"unknown options {sorted(unknown)}; known: {sorted(_OPTIONS)}")
    body: dict[str, Any] = {"texts": list(texts), **{k: v for k, v in options.items() if v is not None}}
    if server_timeout_s is not None:
        body["timeout"] = server_timeout_s
    return body


def headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def new_request_id() -> str:
    return uuid.uuid4().hex


def recognitions(body: Any, request_id: str, expected: int) -> list[Recognition]:
    lists = body.get("entities") if isinstance(body, dict) else None
    if not isinstance(lists, list):
        raise BionerError("the server's answer has no entity lists", request_id=request_id)
    if len(lists) != expected:
        raise ValueError(f"the server answered {len(lists)} entity lists for {expected} texts")
    model = ModelRef(**{k: str(body["model"][k]) for k in ("name", "version", "sha256")})
    return [Recognition(tuple(Entity.from_json(e) for e in ents), model, request_id) for ents in lists]


def settle(
    policy: RetryPolicy, attempt: int, response: httpx.Response | None, error: Exception | None, what: str, request_id: str
) -> float:
    """After one try: seconds to wait before the next, or raise the error the caller should see.

    (A successful response never reaches here.) Both clients call this, so they retry alike.
    """
    if policy.should_retry(attempt, response, error):
        return policy.delay(attempt, retry_after(response) if response is not None else None)
    if error is not None:
        raise BionerError(f"{what} failed after {attempt} tries: {error!r}", request_id=request_id) from error
    assert response is not None
    raise from_response(response)


def halves(texts: list[str], exc: PayloadTooLarge) -> tuple[list[str], list[str]]:
    """The server's window budget was tighter than the client's estimate: split the chunk, or re-raise."""
    if len(texts) < 2 or exc.code != "request_too_large":
        raise exc
    half = len(texts) // 2
    return texts[:half], texts[half:]
