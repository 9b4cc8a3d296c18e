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
from service.decoding.consistency import Consistency
from service.decoding.crf import CRF_KEY, Transitions
from service.decoding.labels import LabelScheme
from service.decoding.pipeline import Head, Pipeline
from service.decoding.token_types import TokenTypes
from service.decoding.windows import DEFAULT_WINDOW, Align, TextEncoder, WindowConfig
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
_TYPED = {
    "name",
    "version",
    "max_length",
    "stride",
    "window_align",
    "aggregation_strategy",
    "decoding",
    "consistency",
    "token_types",
    CRF_KEY,
    "calibration",
    "heads",
}


@dataclass(frozen=True)
class HeadSpec:
    """One head of a multi-head bundle: its name (the corpus it learned), its labels (its columns
    of ``logits``, in order, heads side by side as in ``config.json``'s id2label), and its own CRF
    scores and calibration temperature."""

    name: str
    labels: tuple[str, ...]
    transitions: Transitions | None = None
    temperature: float = 1.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "labels": list(self.labels)}
        if self.transitions is not None:
            out[CRF_KEY] = self.transitions.to_json()
        if self.temperature != 1.0:
            out["calibration"] = {"temperature": self.temperature}
        return out

    @classmethod
    def from_json(cls, data: Any, where: str) -> HeadSpec:
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("labels"), list):
            raise BundleError(f"{where}: each head needs a 'name' and a 'labels' list")
        name = data["name"]
        transitions = Transitions.from_json(data[CRF_KEY]) if CRF_KEY in data else None
        temperature = _temperature(data.get("calibration"), f"{where}, head {name}")
        return cls(name, tuple(str(label) for label in data["labels"]), transitions, temperature)


def _temperature(calibration: Any, where: str) -> float:
    calibration = calibration or {}
    raw_t = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else None
    temperature = float(raw_t) if isinstance(raw_t, int | float) and not isinstance(raw_t, bool) else float("nan")
    if not (math.isfinite(temperature) and temperature > 0):
        raise BundleError(f"{where}: calibration temperature must be a positive number, got {temperature}")
    return temperature


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
    heads: tuple[HeadSpec, ...] = ()  # empty: one head, config.json's labels, named after the bundle
    consistency: Consistency = Consistency.NONE  # whether a name keeps its first mention's type within a text
    token_types: TokenTypes = TokenTypes.NONE  # what the model was trained to read as token_type_ids

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
            "window_align": self.window.align.value,
            "aggregation_strategy": self.strategy.value,
            "decoding": self.default_decoding.value,
        }
        if self.consistency is not Consistency.NONE:
            out["consistency"] = self.consistency.value
        if self.token_types is not TokenTypes.NONE:
            out["token_types"] = self.token_types.value
        if self.name is not None:
            out["name"] = self.name
        if self.version is not None:
            out["version"] = self.version
        if self.transitions is not None:
            out[CRF_KEY] = self.transitions.to_json()
        if self.temperature != 1.0:
            out["calibration"] = {"temperature": self.temperature}
        if self.heads:
            out["heads"] = [h.to_json() for h in self.heads]
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str = SERVING_FILE) -> ServingConfig:
        """Typed and validated; ``where`` names the file in the one-line error."""
        try:
            transitions = Transitions.from_json(data[CRF_KEY]) if CRF_KEY in data else None
            window = WindowConfig(
                int(data.get("max_length", DEFAULT_WINDOW.max_length)),
                int(data.get("stride", DEFAULT_WINDOW.stride)),
                Align(data.get("window_align", DEFAULT_WINDOW.align.value)),
            )
            strategy = Strategy(data.get("aggregation_strategy", Strategy.FIRST.value))
            decoding = Decoding(data["decoding"]) if "decoding" in data else None
            consistency = Consistency(data.get("consistency", Consistency.NONE.value))
            token_types = TokenTypes(data.get("token_types", TokenTypes.NONE.value))
        except (ValueError, TypeError) as exc:
            raise BundleError(f"{where}: {exc}") from exc
        temperature = _temperature(data.get("calibration"), where)
        try:
            heads = tuple(HeadSpec.from_json(h, where) for h in data.get("heads") or ())
        except (ValueError, TypeError) as exc:
            raise BundleError(f"{where}: {exc}") from exc
        if len({h.name for h in heads}) != len(heads):
            raise BundleError(f"{where}: head names must be distinct: {[h.name for h in heads]}")
        if heads and (transitions is not None or "calibration" in data):
            raise BundleError(f"{where}: a multi-head bundle keeps 'crf' and 'calibration' in each head")
        if transitions is not None and strategy is not Strategy.FIRST:
            raise BundleError(f"{where}: a CRF bundle is trained on first-subword emissions; aggregation_strategy must be 'first'")
        name, version = data.get("name"), data.get("version")
        return cls(
            window=window,
            strategy=strategy,
            decoding=decoding,
            consistency=consistency,
            token_types=token_types,
            transitions=transitions,
            temperature=temperature,
            name=None if name is None else str(name),
            version=None if version is None else str(version),
            extra={k: v for k, v in data.items() if k not in _TYPED},
            heads=heads,
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
    align: Align | None = None,
    strategy: Strategy | None = None,
    decoding: Decoding | None = None,
    consistency: Consistency | None = None,
    name: str | None = None,
) -> Pipeline:
    """The decoding pipeline a bundle (or checkpoint) was released with, with overrides on top.

    ``scheme`` is ``config.json``'s labels: one head's, or every head's side by side. A one-head
    bundle's head is called ``name`` (the name it is served under; default: the bundle's). The
    encoder marks the token types the model was trained on, whatever ``encoder`` marked."""
    encoder = encoder.with_token_types(serving.token_types)
    window = WindowConfig(
        max_length or serving.window.max_length, serving.window.stride if stride is None else stride, align or serving.window.align
    )
    strategy, decoding = strategy or serving.strategy, decoding or serving.default_decoding
    consistency = consistency or serving.consistency
    if not serving.heads:
        head_name = name or serving.name or ""
        return Pipeline(
            encoder, scheme, window, strategy, decoding, serving.transitions, serving.temperature, pad_id, head_name, consistency
        )
    return Pipeline(encoder, heads_of(serving.heads, scheme), window, strategy, decoding, pad_id=pad_id, consistency=consistency)


def heads_of(specs: tuple[HeadSpec, ...], scheme: LabelScheme) -> list[Head]:
    """Each head's columns, consecutive, checked against ``config.json``'s id2label."""
    joined = [label for spec in specs for label in spec.labels]
    if joined != list(scheme.labels):
        raise ValueError(f"the heads' labels {joined} are not config.json's id2label {list(scheme.labels)}")
    heads, start = [], 0
    for spec in specs:
        head_scheme = LabelScheme.from_id2label(dict(enumerate(spec.labels)))
        if spec.transitions is not None and len(spec.transitions) != len(head_scheme):
            raise ValueError(f"head {spec.name}: CRF scores cover {len(spec.transitions)} labels, the head has {len(head_scheme)}")
        heads.append(Head(spec.name, head_scheme, slice(start, start + len(spec.labels)), spec.transitions, spec.temperature))
        start += len(spec.labels)
    return heads
