"""Domain errors raised by the engine and batcher; ``api/errors.py`` maps them to HTTP once."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; ``code`` is the stable machine-readable name sent to clients."""

    code = "internal_error"

    def __init__(self, message: str = "", retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # for 503s that know when trying again makes sense


class QueueFullError(ServiceError):
    code = "overloaded"


class DeadlineUnmeetableError(ServiceError):
    """The queue, with this request in it, would not finish before the earliest deadline it holds."""

    code = "deadline_unmeetable"


class ShuttingDownError(ServiceError):
    code = "shutting_down"


class DeadlineExceededError(ServiceError):
    code = "deadline_exceeded"


class InferenceError(ServiceError):
    code = "inference_failed"


class TextTooLongError(ServiceError):
    code = "text_too_long"


class RequestTooLargeError(ServiceError):
    """More windows than the whole queue holds: retrying cannot help, so it is not a 503."""

    code = "request_too_large"


class InvalidRequestError(ServiceError):
    code = "invalid_request"


class UnsupportedOptionError(InvalidRequestError, ValueError):
    """A choice this model cannot make (CRF decoding without CRF scores, a label it lacks):
    422 on a request, and a ``ValueError`` where a setting or a CLI flag asked for it."""


class MalformedDocumentError(ServiceError, ValueError):
    """A BioC/PubTator/JSON Lines document that cannot be read: 400, with the line when known."""

    code = "malformed_document"


class UnknownModelError(ServiceError):
    """A request named a model this service does not serve: 404, the message lists those it does."""

    code = "unknown_model"


class BundleError(ServiceError):
    """The model folder is missing, corrupt or inconsistent; raised at startup."""

    code = "bad_bundle"


class ClientGoneError(ServiceError):
    """The client disconnected; its queued work was dropped (logged as 499, nginx's convention)."""

    code = "client_closed_request"
