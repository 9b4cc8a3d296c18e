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


def write_report(out: Path, stem: str, lines: list[str], result: dict[str, Any]) -> None:
    """``stem``.md (the table) and ``stem``.json (every figure) under ``out``, and the table on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    print("\n".join(lines))


def cpu_model() -> str:
    """``lscpu``'s model name, with AVX-512 VNNI or AVX2 noted: int8 speed depends on it."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    name = re.search(r"model name\s*:\s*(.+)", info)
    flags = re.search(r"flags\s*:\s*(.+)", info)
    have = set(flags.group(1).split()) if flags else set()
    isa = "AVX-512 VNNI" if "avx512_vnni" in have else "AVX2, no VNNI" if "avx2" in have else "no AVX2"
    return f"{name.group(1).strip() if name else 'unknown CPU'} ({isa})"


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


def service_env(items: list[str]) -> dict[str, str]:
    """``--service-env BIONER_X=value ...`` as the environment a service run adds."""
    if bad := [item for item in items if "=" not in item]:
        raise SystemExit(f"settings must be NAME=value, got {bad}")
    return dict(item.split("=", 1) for item in items)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (the workers of ``serve --workers``); none once it exited."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    return [pid, *(p for child in children for p in process_tree(int(child)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process, all its threads (ONNX Runtime's pool included),
    and of its live descendants."""
    total = 0.0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)
    return total


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
