"""Write the bundle's one extra file, ``serving.json``, that the service reads beside the export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from service.decoding.predict import WindowConfig
from service.runtime.bundle import SERVING_FILE


def write_serving_config(
    folder: Path, window: WindowConfig, strategy: str, extra: dict[str, Any] | None = None, decoding: str = "constrained"
) -> None:
    path = folder / SERVING_FILE
    current = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    current.update({"max_length": window.max_length, "stride": window.stride, "aggregation_strategy": strategy, "decoding": decoding})
    current.update(extra or {})
    path.write_text(json.dumps(current, indent=2, default=str), encoding="utf-8")
