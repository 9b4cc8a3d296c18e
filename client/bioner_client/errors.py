"""Every error response becomes an exception carrying its status, code and request id."""

from __future__ import annotations

import httpx


class BionerError(Exception):
    def __init__(self, message: str, status: int | None = None, code: str | None = None, request_id: str | None = None) -> None:
        super().__init__(f"{message} (status {status}, code {code}, request {request_id})" if status else message)
        self.message = message
        self.status = status
        self.code = code
        self.request_id = request_id


class BadRequest(BionerError):
    """400 / 422: the request itself is wrong; retrying cannot help."""


class Unauthorized(BionerError):
    """401: no valid API key."""


class PayloadTooLarge(BionerError):
    """413: a text, the body or the request's work is over the server's limits."""


class ServerError(BionerError):
    """500: inference failed; the message names the request id to look up in the server log."""


class ServiceUnavailable(BionerError):
    """503 after the retries ran out (draining, or refused by admission)."""

    def __init__(self, *args: object, retry_after_s: float | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class Overloaded(ServiceUnavailable):
    """503 ``overloaded`` / ``deadline_unmeetable`` after the retries ran out."""


class DeadlineExceeded(BionerError):
    """504: the request's deadline passed on the server."""


_BY_STATUS: dict[int, type[BionerError]] = {
    400: BadRequest,
    401: Unauthorized,
    413: PayloadTooLarge,
    422: BadRequest,
    504: DeadlineExceeded,
}


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def from_response(response: httpx.Response) -> BionerError:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    body = error if isinstance(error, dict) else {}
    message = str(body.get("message") or response.reason_phrase or "error")
    code, request_id = body.get("code"), body.get("request_id") or response.headers.get("x-request-id")
    status = response.status_code
    if status == 503:
        kind = Overloaded if code in ("overloaded", "deadline_unmeetable") else ServiceUnavailable
        return kind(message, status, code, request_id, retry_after_s=retry_after(response))
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else BadRequest)
    return cls(message, status, code, request_id)
