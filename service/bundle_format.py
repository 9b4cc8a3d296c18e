"""The bundle format's one owner: file names, ``serving.json`` read and written with typed values,
its defaults and its validation.

Pure (json, numpy through the decoding types): training writes bundles with it without the ONNX
runtime, and the service reads them with it without torch. ``models/README.md`` is its prose.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from service.decoding.aggregate import Decoding, Strategy
from service.decoding.crf import CRF_KEY, Transitions
from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Pipeline
from service.decoding.windows import DEFAULT_WINDOW, TextEncoder, WindowConfig
from service.errors import BundleError

SERVING_FILE = "serving.json"
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
GOLDEN_FILE = "golden.json"
# What an export copies beside model.onnx (optimum writes the tokenizer files and config.json).
BUNDLE_FILES = (
    CONFIG_FILE,
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "merges.txt",
    "vocab.json",
    SERVING_FILE,
)

# Keys this module types; everything else in serving.json travels untouched in ``extra``.
_TYPED = {"name", "version", "max_length", "stride", "aggregation_strategy", "decoding", CRF_KEY, "calibration"}


@dataclass(frozen=True)
class ServingConfig:
    """``serving.json`` with its defaults applied. A missing file is a valid, all-default bundle."""

    window: WindowConfig = DEFAULT_WINDOW
    strategy: Strategy = Strategy.FIRST
    decoding: Decoding | None = None  # None: CRF when the bundle has transition scores, else constrained
    transitions: Transitions | None = None
    temperature: float = 1.0  # score calibration fitted at export
    name: str | None = None
    version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # training record, quantisation, checksums

    @property
    def default_decoding(self) -> Decoding:
        if self.decoding is not None:
            return self.decoding
        return Decoding.CRF if self.transitions is not None else Decoding.CONSTRAINED

    def with_extra(self, **extra: Any) -> ServingConfig:
        return replace(self, extra={**self.extra, **extra})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "max_length": self.window.max_length,
            "stride": self.window.stride,
            "aggregation_strategy": self.strategy.value,
            "decoding": self.default_decoding.value,
        }
        if self.name is not None:
            out["name"] = self.name
        if self.version is not None:
            out["version"] = self.version
        if self.transitions is not None:
            out[CRF_KEY] = self.transitions.to_json()
        if self.temperature != 1.0:
            out["calibration"] = {"temperature": self.temperature}
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = SERVING_FILE) -> ServingConfig:
        """Typed and validated; ``where`` names the file in the one-line error."""
        try:
            transitions = Transitions.from_json(data[CRF_KEY]) if CRF_KEY in data else None
            window = WindowConfig(int(data.get("max_length", DEFAULT_WINDOW.max_length)), int(data.get("stride", DEFAULT_WINDOW.stride)))
            strategy = Strategy(data.get("aggregation_strategy", Strategy.FIRST.value))
            decoding = Decoding(data["decoding"]) if "decoding" in data else None
        except (ValueError, TypeError) as exc:
            raise BundleError(f"{where}: {exc}") from exc
        calibration = data.get("calibration") or {}
        raw_t = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else None
        temperature = float(raw_t) if isinstance(raw_t, int | float) and not isinstance(raw_t, bool) else float("nan")
        if not (math.isfinite(temperature) and temperature > 0):
            raise BundleError(f"{where}: calibration temperature must be a positive number, got {temperature}")
        if transitions is not None and strategy is not Strategy.FIRST:
            raise BundleError(f"{where}: a CRF bundle is trained on first-subword emissions; aggregation_strategy must be 'first'")
        name, version = data.get("name"), data.get("version")
        return cls(
            window=window,
            strategy=strategy,
            decoding=decoding,
            transitions=transitions,
            temperature=temperature,
            name=None if name is None else str(name),
            version=None if version is None else str(version),
            extra={k: v for k, v in data.items() if k not in _TYPED},
        )


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BundleError(f"{what} missing: {path}") from exc
    except (OSError, ValueError) as exc:
        raise BundleError(f"{what} unreadable ({path}): {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{what} must be a JSON object: {path}")
    return data


def read_serving(folder: Path) -> ServingConfig:
    """The one reader of ``serving.json``: the service, evaluation, export and training use it."""
    path = folder / SERVING_FILE
    if not path.exists():
        return ServingConfig()
    return ServingConfig.from_json(read_json_object(path, SERVING_FILE), f"{SERVING_FILE} in {folder}")


def write_serving(folder: Path, config: ServingConfig) -> None:
    """The one writer: what :func:`read_serving` reads back equal."""
    (folder / SERVING_FILE).write_text(json.dumps(config.to_json(), indent=2, default=str), encoding="utf-8")


def pipeline_for(
    serving: ServingConfig,
    encoder: TextEncoder,
    scheme: LabelScheme,
    pad_id: int = 0,
    *,
    max_length: int | None = None,
    stride: int | None = None,
    strategy: Strategy | None = None,
    decoding: Decoding | None = None,
) -> Pipeline:
    """The decoding pipeline a bundle (or checkpoint) was released with, with overrides on top."""
    window = WindowConfig(max_length or serving.window.max_length, serving.window.stride if stride is None else stride)
    return Pipeline(
        encoder,
        scheme,
        window,
        strategy or serving.strategy,
        decoding or serving.default_decoding,
        serving.transitions,
        serving.temperature,
        pad_id,
    )
