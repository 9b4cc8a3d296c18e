"""A run folder's metrics.jsonl: its header line, then one record per finished epoch.

The one reader and writer of that file. Torch-free, so the study scripts that only read finished
runs do not pull in the training stack.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LOG_FILE = "metrics.jsonl"


def append_record(folder: Path, record: dict[str, Any]) -> None:
    """One line; a resumed run first cuts the lines of its half-finished epoch (``TrainingLoop.track``)."""
    with (folder / LOG_FILE).open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def read_log(folder: Path) -> list[dict[str, Any]]:
    """Every record, in order, the header first."""
    return [json.loads(line) for line in (folder / LOG_FILE).read_text(encoding="utf-8").splitlines()]


def epoch_records(folder: Path) -> list[dict[str, Any]]:
    """The per-epoch records (the header, which names the run's labels or heads, is skipped)."""
    return [record for record in read_log(folder) if "epoch" in record]


def train_seconds(folder: Path) -> float:
    """Wall time of the run's epochs, as each epoch logged it."""
    return sum(record.get("epoch_seconds", 0.0) for record in read_log(folder))
