"""ModelRegistry: names to engines, and one lifecycle that covers every model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from service.batching import Health
from service.engine import Engine, ModelInfo
from service.errors import UnknownModelError
from service.registry import ModelRegistry, heads


@dataclass
class FakeEngine:
    labels: tuple[str, ...]
    health: Health = Health(None)
    queued_windows: int = 0
    drained: list[float | None] = field(default_factory=list)
    started: bool = False
    warmed: bool = False
    drain_expired: bool = False

    @property
    def info(self) -> ModelInfo:
        return ModelInfo("x", "1", "0" * 64, self.labels, 16, 4, "first", "greedy", "CPUExecutionProvider")

    def warmup(self) -> None:
        self.warmed = True

    def start(self) -> None:
        self.started = True

    def alive(self) -> Health:
        return self.health

    def ready(self) -> Health:
        return self.health

    async def drain(self, timeout_s: float | None = None) -> None:
        self.drained.append(timeout_s)


def registry(default: str | None = None, **engines: Any) -> ModelRegistry:
    as_engines: dict[str, Engine] = engines
    return ModelRegistry(as_engines, default)


def test_get_defaults_to_the_first_or_the_named_default() -> None:
    a, b = FakeEngine(("protein",)), FakeEngine(("gene", "protein"))
    assert registry(a=a, b=b).get() is a and registry("b", a=a, b=b).get() is b
    assert registry(a=a, b=b).get("b") is b and registry(a=a, b=b).names == ("a", "b")
    assert registry(a=a, b=b).labels() == ["protein", "gene"]
    with pytest.raises(UnknownModelError, match="no model 'c' here; the models are: a, b"):
        registry(a=a, b=b).get("c")
    with pytest.raises(ValueError, match="default_model 'c' is not loaded; the models are: a, b"):
        registry("c", a=a, b=b)
    with pytest.raises(ValueError, match="no model"):
        registry()


def test_lifecycle_covers_every_model() -> None:
    a, b = FakeEngine(("p",), queued_windows=3), FakeEngine(("g",), queued_windows=4)
    models = registry(a=a, b=b)
    models.warmup()
    models.start()
    assert a.warmed and b.warmed and a.started and b.started
    assert models.queued_windows == 7 and models.ready().ok and models.alive().ok and not models.drain_expired
    b.health = Health("inference worker stopped")
    assert models.ready().reason == "model b: inference worker stopped" and models.alive().reason == "model b: inference worker stopped"
    assert registry(b=b).ready().reason == "inference worker stopped"  # one model: the reason as before
    b.drain_expired = True
    assert models.drain_expired


async def test_drain_drains_every_model_within_one_timeout() -> None:
    a, b = FakeEngine(("p",)), FakeEngine(("g",))
    await registry(a=a, b=b).drain(5.0)
    assert a.drained == [5.0] and b.drained == [5.0]


def test_heads_are_one_per_model_for_now() -> None:
    assert heads("chem", FakeEngine(("gene", "chemical")).info) == [{"name": "chem", "labels": ["gene", "chemical"]}]
