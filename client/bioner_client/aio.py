"""``AsyncClient``: the same calls as ``Client``, awaitable; chunks run as concurrent tasks."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import httpx

from bioner_client import protocol
from bioner_client.errors import PayloadTooLarge
from bioner_client.models import Limits, Recognition
from bioner_client.retry import RetryPolicy


class AsyncClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        concurrency: int = 4,
        server_timeout_s: float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout_s, headers=protocol.headers(api_key), transport=transport)
        self.retry = retry or RetryPolicy()
        self.concurrency = concurrency
        self.server_timeout_s = server_timeout_s
        self._limits: Limits | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def model(self) -> dict[str, Any]:
        return dict((await self._send("GET", "/model", None))[0])

    async def limits(self) -> Limits:
        if self._limits is None:
            self._limits = Limits.from_model_info(await self.model())
        return self._limits

    async def recognize(self, text: str, **options: Any) -> Recognition:
        return (await self._recognize_chunk([text], options))[0]

    async def recognize_many(self, texts: Sequence[str], **options: Any) -> list[Recognition]:
        texts = list(texts)
        gate = asyncio.Semaphore(self.concurrency)

        async def one(chunk: range) -> list[Recognition]:
            async with gate:
                return await self._recognize_chunk(texts[chunk.start : chunk.stop], options)

        tasks = [asyncio.ensure_future(one(chunk)) for chunk in (await self.limits()).chunks(texts, self.concurrency)]
        try:
            answers = await asyncio.gather(*tasks)
        finally:  # on the first error, the other chunks are cancelled, not left running
            for task in tasks:
                task.cancel()
        return [recognition for chunk in answers for recognition in chunk]

    async def _recognize_chunk(self, texts: list[str], options: dict[str, Any]) -> list[Recognition]:
        try:
            body, request_id = await self._send("POST", "/ner", protocol.payload(texts, options, self.server_timeout_s))
        except PayloadTooLarge as exc:
            first, second = protocol.halves(texts, exc)
            return await self._recognize_chunk(first, options) + await self._recognize_chunk(second, options)
        return protocol.recognitions(body, request_id, len(texts))

    async def _send(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[Any, str]:
        request_id = protocol.new_request_id()
        attempt = 0
        while True:
            attempt += 1
            response: httpx.Response | None = None
            error: Exception | None = None
            try:
                response = await self._http.request(method, path, json=body, headers={"X-Request-ID": request_id})
            except httpx.TransportError as exc:
                error = exc
            if response is not None and response.status_code < 300:
                return response.json(), request_id
            await asyncio.sleep(protocol.settle(self.retry, attempt, response, error, f"{method} {path}", request_id))
