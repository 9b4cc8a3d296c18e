"""``Client``: blocking calls; ``recognize_many`` runs its chunks on a small thread pool."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bioner_client import protocol
from bioner_client.errors import PayloadTooLarge
from bioner_client.models import Limits, Recognition
from bioner_client.retry import RetryPolicy


class Client:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        server_timeout_s: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """``timeout_s`` bounds each HTTP call; ``server_timeout_s`` asks the server for a shorter
        deadline (admission then refuses at once what it could not finish in time)."""
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, headers=protocol.headers(api_key), transport=transport)
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.server_timeout_s = server_timeout_s
        self._limits: Limits | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def model(self) -> dict[str, Any]:
        return dict(self._send("GET", "/model", None)[0])

    def limits(self) -> Limits:
        if self._limits is None:
            self._limits = Limits.from_model_info(self.model())
        return self._limits

    def recognize(self, text: str, **options: Any) -> Recognition:
        return self._recognize_chunk([text], options)[0]

    def recognize_many(self, texts: Sequence[str], **options: Any) -> list[Recognition]:
        """Every text's entities, in order: chunked to the server's limits, chunks sent concurrently."""
        texts = list(texts)
        chunks = self.limits().chunks(texts, self.concurrency)
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            futures = [pool.submit(self._recognize_chunk, texts[r.start : r.stop], options) for r in chunks]
            answers = [f.result() for f in futures]
        finally:  # on the first error, chunks not yet sent are not sent
            pool.shutdown(wait=True, cancel_futures=True)
        return [recognition for chunk in answers for recognition in chunk]

    def _recognize_chunk(self, texts: list[str], options: dict[str, Any]) -> list[Recognition]:
        try:
            body, request_id = self._send("POST", "/ner", protocol.payload(texts, options, self.server_timeout_s))
        except PayloadTooLarge as exc:
            first, second = protocol.halves(texts, exc)
            return self._recognize_chunk(first, options) + self._recognize_chunk(second, options)
        return protocol.recognitions(body, request_id, len(texts))

    def _send(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[Any, str]:
        request_id = protocol.new_request_id()
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = self._http.request(method, path, json=body, headers={"X-Request-ID": request_id})
            except httpx.TransportError as exc:
                error = exc
            if response is not None and response.status_code < 300:
                return response.json(), request_id
            time.sleep(protocol.settle(self.retry, attempt, response, error, f"{method} {path}", request_id))
