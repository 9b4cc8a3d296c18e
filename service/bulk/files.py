"""Which files to annotate, where each one's output goes, and writing it atomically.

An output file appears only complete (written beside it under a hidden name, then renamed), so
a killed run loses at most the file in progress and a rerun skips every file already done.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from service.documents.formats import SUFFIX, Format

_INPUT_SUFFIXES = (".txt", ".jsonl", ".json", ".xml", ".gz", ".pubtator", ".bioc")
PARTIAL = ".partial"


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


def input_files(specs: list[str]) -> list[tuple[Path, Path]]:
    """(file, its name relative to the argument that found it): folders recursively, globs, files."""
    found: list[tuple[Path, Path]] = []
    for spec in specs:
        path = Path(spec)
        if path.is_dir():
            found.extend((f, f.relative_to(path)) for f in sorted(path.rglob("*")) if f.is_file() and _wanted(f))
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            matches = sorted(Path(m) for m in glob.glob(spec, recursive=True))
            if not matches:
                raise FileNotFoundError(f"no input matches {spec}")
            found.extend((m, Path(m.name)) for m in matches if m.is_file())
    return found


def _wanted(path: Path) -> bool:
    return not path.name.startswith(".") and path.suffix.lower() in _INPUT_SUFFIXES


def output_name(relative: Path, fmt: Format) -> Path:
    name = relative.name
    for suffix in (".xml.gz", ".gz", ".xml", ".jsonl", ".json", ".txt", ".pubtator", ".bioc"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return relative.with_name(name + SUFFIX[fmt])


def plan_jobs(specs: list[str], output_dir: Path, fmt: Format) -> list[Job]:
    """Every input with its output path, in a fixed order; two inputs may not share an output."""
    jobs: list[Job] = []
    seen: dict[Path, Path] = {}
    for source, relative in input_files(specs):
        target = output_dir / output_name(relative, fmt)
        if target in seen:
            raise ValueError(f"{source} and {seen[target]} would both write {target}")
        seen[target] = source
        jobs.append(Job(source, target))
    return jobs


def write_atomically(target: Path, payload: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}{PARTIAL}-{os.getpid()}")
    with partial.open("wb") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(partial, target)


def remove_partials(output_dir: Path) -> int:
    """What a killed run left behind: hidden partial files, never a visible output."""
    stale = list(output_dir.rglob(f".*{PARTIAL}-*")) if output_dir.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


MANIFEST = ".bioner-annotate.json"


def claim_output(output_dir: Path, settings: Mapping[str, object]) -> None:
    """The settings an output folder's files were made with (model checksum, format, offsets, ...),
    written on the first run; a later run with other settings is refused, since resuming would
    mix files made two ways and skip every file already there."""
    output_dir.mkdir(parents=True, exist_ok=True)
    path = output_dir / MANIFEST
    if path.exists():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(before) | set(settings) if before.get(k) != settings.get(k))
        if changed:
            what = ", ".join(f"{k}: {before.get(k)} -> {settings.get(k)}" for k in changed)
            raise ValueError(f"{output_dir} holds output made with other settings ({what}): write to another folder, or empty this one")
        return
    path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n", encoding="utf-8")
