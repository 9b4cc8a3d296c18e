"""What every load script shares: arguments, a server process's lifecycle, /proc readings, verdicts."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "bioner-minilm-jnlpba")
    parser.add_argument("--texts", type=Path, default=ROOT.parent / "shared" / "data" / "jnlpba" / "train")


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=60)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def metric(text: str, pattern: str) -> float:
    """Sum of the captures of ``pattern`` in a /metrics scrape (one series per model when
    ``pattern`` allows any labels), 0 when absent."""
    return sum(float(found) for found in re.findall(pattern, text, re.M))


def series(name: str, **labels: str) -> str:
    """A pattern for ``name``'s series with these labels and any others (``model`` among them)."""
    wanted = "".join(rf'(?=[^}}]*\b{k}="{re.escape(v)}")' for k, v in labels.items())
    return rf"^{name}(?:\{{{wanted}[^}}]*\}})? (\S+)"


def histogram(text: str, name: str) -> tuple[float, float]:
    """``(sum, count)`` of a Prometheus histogram in a /metrics scrape, over every model."""
    return metric(text, series(f"{name}_sum")), metric(text, series(f"{name}_count"))


def verdict(report: dict[str, Any], ok: bool) -> None:
    print(json.dumps(report, indent=2))
    print("OK" if ok else "PROBLEMS FOUND")
    raise SystemExit(0 if ok else 1)
