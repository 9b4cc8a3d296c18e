"""ModelRegistry: the served models by name, and the lifecycle of all of them at once.

Each model is a whole ``Engine``: its own session, batcher queue, limits and admission rate. That
is the simplest scheduling that is correct: a flood of requests for one model fills only that
model's queue and is refused (503) on that model's measured drain rate, so it never delays the
others' queues. The models do share the machine's cores, which each engine's admission sees as
a lower drain rate while another model is busy. Routes ask ``get(name)``; the lifespan, ``/ready``,
``/health`` and the SIGTERM drain go through the registry so that no model is left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping

from service.batching import Health
from service.engine import Engine, ModelInfo
from service.errors import UnknownModelError


def heads(name: str, info: ModelInfo) -> list[dict[str, object]]:
    """What a model recognises, head by head (a one-head model's head is named after the model):
    the one place ``/models`` learns its heads from."""
    return [dict(h) for h in info.heads] or [{"name": name, "labels": list(info.labels)}]


class ModelRegistry:
    def __init__(self, engines: Mapping[str, Engine], default: str | None = None) -> None:
        if not engines:
            raise ValueError("no model to serve")
        self._engines = dict(engines)
        self.default = default if default is not None else next(iter(self._engines))
        if self.default not in self._engines:
            raise ValueError(f"default_model {self.default!r} is not loaded; the models are: {', '.join(self._engines)}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._engines)

    def get(self, name: str | None = None) -> Engine:
        """The engine of ``name``; the default model's when ``None``."""
        if name is None:
            return self._engines[self.default]
        engine = self._engines.get(name)
        if engine is None:
            raise UnknownModelError(f"no model {name!r} here; the models are: {', '.join(self._engines)}")
        return engine

    def items(self) -> Iterator[tuple[str, Engine]]:
        return iter(self._engines.items())

    def labels(self) -> list[str]:
        """Every label some model knows, in first-seen order (the request schema's enum)."""
        return list(dict.fromkeys(label for engine in self._engines.values() for label in engine.info.labels))

    # -- lifecycle: each call covers every model ---------------------------------------------
    def warmup(self) -> None:
        for engine in self._engines.values():
            engine.warmup()

    def start(self) -> None:
        for engine in self._engines.values():
            engine.start()

    def alive(self) -> Health:
        return self._first_problem([(name, engine.alive()) for name, engine in self._engines.items()])

    def ready(self) -> Health:
        """Ready when every model is: a model that cannot serve should take the replica out of
        rotation rather than answer its share of requests with errors."""
        return self._first_problem([(name, engine.ready()) for name, engine in self._engines.items()])

    def _first_problem(self, states: list[tuple[str, Health]]) -> Health:
        for name, health in states:
            if not health.ok:
                return health if len(self._engines) == 1 else Health(f"model {name}: {health.reason}")
        return Health(None)

    @property
    def queued_windows(self) -> int:
        return sum(engine.queued_windows for engine in self._engines.values())

    async def drain(self, timeout_s: float | None = None) -> None:
        """Every model drains at once, within the same timeout."""
        await asyncio.gather(*(engine.drain(timeout_s) for engine in self._engines.values()))

    @property
    def drain_expired(self) -> bool:
        return any(engine.drain_expired for engine in self._engines.values())
