"""SIGTERM in the order a load balancer needs: unready first, listener closed last.

uvicorn closes its listener the moment SIGTERM arrives and reports unready only when the app's
lifespan ends, so a load balancer polling ``/ready`` keeps routing to a socket that is gone.
Here the first SIGTERM only marks the app as draining: ``/ready`` answers 503 at once, new
``/ner`` requests get 503, and requests already past that check (tokenising) and queued work
keep running. After ``grace_s`` the listener closes (uvicorn's own shutdown) and the batcher
stops admitting; queued work gets until ``timeout_s`` after the signal, then what is left fails
with 503. A second SIGTERM or SIGINT skips the grace period.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    def __init__(
        self,
        config: uvicorn.Config,
        app: FastAPI,
        grace_s: float,
        timeout_s: float,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        """``on_started`` is told once the lifespan has started and the listener serves (a worker
        tells its supervisor so)."""
        super().__init__(config)
        self._app = app
        self._grace_s = grace_s
        self._timeout_s = timeout_s
        self._on_started = on_started
        self._signalled_at: float | None = None
        self._drain: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._on_started is not None:
            self._on_started()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler: only plain assignments here; the drain starts on the loop's next tick.
        if self._signalled_at is not None or self._grace_s <= 0:
            super().handle_exit(sig, frame)
            return
        self._captured_signals.append(sig)
        self._signalled_at = time.monotonic()
        self._app.state.draining = True

    async def on_tick(self, counter: int) -> bool:
        if self._signalled_at is not None and self._drain is None:
            self._drain = asyncio.create_task(self._drain_then_close())
        return await super().on_tick(counter)

    async def _drain_then_close(self) -> None:
        state = self._app.state
        models = getattr(state, "registry", None)  # every model drains
        metrics = getattr(state, "metrics", None)
        if metrics is not None:
            metrics.ready.set(0)
        log.info(
            "SIGTERM: /ready now 503, %d windows queued; closing the listener in %.1f s",
            models.queued_windows if models else 0,
            self._grace_s,
        )
        await asyncio.sleep(self._grace_s)
        self.should_exit = True
        if models is not None:
            started = self._signalled_at or time.monotonic()
            await models.drain(max(self._timeout_s - (time.monotonic() - started), 0.1))
