"""Client for the bioner service: ``Client`` (sync) and ``AsyncClient``, typed results, mapped errors.

from bioner_client import Client
with Client("http://127.0.0.1:8000") as ner:
    print(ner.recognize("IL-2 gene expression requires NF-kappa B."))
"""

from bioner_client.aio import AsyncClient
from bioner_client.errors import (
    BadRequest,
    BionerError,
    DeadlineExceeded,
    Overloaded,
    PayloadTooLarge,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)
from bioner_client.models import Alternative, Entity, Limits, ModelRef, Recognition
from bioner_client.retry import RetryPolicy
from bioner_client.sync import Client

__all__ = [
    "Alternative",
    "AsyncClient",
    "BadRequest",
    "BionerError",
    "Client",
    "DeadlineExceeded",
    "Entity",
    "Limits",
    "ModelRef",
    "Overloaded",
    "PayloadTooLarge",
    "Recognition",
    "RetryPolicy",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
]
