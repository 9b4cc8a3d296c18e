"""Golden answers: the entities a bundle must give for a fixed set of texts, on any machine.

``golden.json`` is written at export. ``reference`` holds the fp32 graph's entities (the
model's own answer); ``expected`` holds what the bundle's graph gave on the export machine (the
same as ``reference`` for an fp32 bundle). :func:`compare` checks a running model against
``expected``: identical spans and labels, scores within ``score_tolerance``. Integer kernels
that saturate on one instruction set and not another (u8s8 int8 without VNNI) show up here as
changed spans, which is why a service runs this check at startup and reports it on ``/model``.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from service.decoding.aggregate import Entity

GOLDEN_FILE = "golden.json"
DEFAULT_SCORE_TOLERANCE = 1e-3
_CPU_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")

# (start, end, label, score)
Span = tuple[int, int, str, float]


@dataclass(frozen=True)
class Golden:
    texts: list[str]
    expected: list[list[Span]]
    reference: list[list[Span]]
    score_tolerance: float
    made_on: dict[str, Any]


@dataclass(frozen=True)
class CheckReport:
    passed: bool
    texts: int
    texts_differing: int
    max_score_diff: float
    score_tolerance: float
    agrees_with_fp32: int  # texts whose spans equal the fp32 reference's
    differences: list[str] = field(default_factory=list)
    cpu: dict[str, Any] = field(default_factory=dict)
    made_on: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def spans_of(entities: Sequence[Entity]) -> list[Span]:
    return [(e.start, e.end, e.label, float(e.score)) for e in entities]


def cpu_summary() -> dict[str, Any]:
    """This machine's CPU model and the instruction sets int8 kernels dispatch on."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"model": model, "machine": platform.machine(), "flags": [f for f in _CPU_FLAGS if f in flags]}


def write_golden(
    folder: Path,
    texts: Sequence[str],
    expected: Sequence[Sequence[Entity]],
    reference: Sequence[Sequence[Entity]],
    score_tolerance: float = DEFAULT_SCORE_TOLERANCE,
    made_on: dict[str, Any] | None = None,
) -> Path:
    payload = {
        "score_tolerance": score_tolerance,
        "made_on": made_on or {},
        "texts": [
            {"text": t, "expected": [list(s) for s in spans_of(e)], "reference": [list(s) for s in spans_of(r)]}
            for t, e, r in zip(texts, expected, reference, strict=True)
        ],
    }
    path = folder / GOLDEN_FILE
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


class GoldenError(ValueError):
    """golden.json exists but cannot be read as golden answers."""


def read_golden(folder: Path) -> Golden | None:
    path = folder / GOLDEN_FILE
    if not path.is_file():
        return None
    try:
        return _parse(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GoldenError(f"{path} is not a golden-answer file: {type(exc).__name__}: {exc}") from None


def _parse(data: dict[str, Any]) -> Golden:
    def spans(rows: list[list[Any]]) -> list[Span]:
        return [(int(a), int(b), str(label), float(score)) for a, b, label, score in rows]

    items = data["texts"]
    return Golden(
        texts=[item["text"] for item in items],
        expected=[spans(item["expected"]) for item in items],
        reference=[spans(item["reference"]) for item in items],
        score_tolerance=float(data.get("score_tolerance", DEFAULT_SCORE_TOLERANCE)),
        made_on=dict(data.get("made_on", {})),
    )


def compare(golden: Golden, recognize: Callable[[list[str]], list[list[Entity]]]) -> CheckReport:
    """Run ``recognize`` over the golden texts and compare with what the bundle promised."""
    found = [spans_of(e) for e in recognize(golden.texts)]
    differing, worst, agrees = 0, 0.0, 0
    differences: list[str] = []
    for index, (got, want, ref) in enumerate(zip(found, golden.expected, golden.reference, strict=True)):
        same_spans = [s[:3] for s in got] == [s[:3] for s in want]
        if same_spans:
            worst = max([worst, *(abs(a[3] - b[3]) for a, b in zip(got, want))])
        if [s[:3] for s in got] == [s[:3] for s in ref]:
            agrees += 1
        if not same_spans:
            differing += 1
            missing = sorted({s[:3] for s in want} - {s[:3] for s in got})
            extra = sorted({s[:3] for s in got} - {s[:3] for s in want})
            differences.append(f"text {index}: expected but missing {missing[:3]}, found but not expected {extra[:3]}")
    passed = differing == 0 and worst <= golden.score_tolerance
    if differing == 0 and not passed:
        differences.append(f"scores differ by up to {worst:.2e} (tolerance {golden.score_tolerance:.0e})")
    return CheckReport(
        passed=passed,
        texts=len(golden.texts),
        texts_differing=differing,
        max_score_diff=worst,
        score_tolerance=golden.score_tolerance,
        agrees_with_fp32=agrees,
        differences=differences[:10],
        cpu=cpu_summary(),
        made_on=golden.made_on,
    )
