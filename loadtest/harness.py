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
    """First capture of ``pattern`` in a /metrics scrape, 0 when absent."""
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def histogram(text: str, name: str) -> tuple[float, float]:
    """``(sum, count)`` of a Prometheus histogram in a /metrics scrape."""
    return metric(text, rf"^{name}_sum (\S+)"), metric(text, rf"^{name}_count (\S+)")


def verdict(report: dict[str, Any], ok: bool) -> None:
    print(json.dumps(report, indent=2))
    print("OK" if ok else "PROBLEMS FOUND")
    raise SystemExit(0 if ok else 1)
