"""Memory of several models in one service: RSS of a real server process serving the same bundle
1, 2 and 3 times under different names (``BIONER_MODELS``), after startup (warm-up and self-check
included) and one request to each model. Loopback only.

    python loadtest/models_rss.py --model models/bioner-minilm-jnlpba --counts 1 2 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import start_service  # noqa: E402
from harness import add_common_args, cpu_model, rss_mb, stop_service  # noqa: E402

TEXT = "IL-2 gene expression and NF-kappa B activation through CD28 requires reactive oxygen production by 5-lipoxygenase."


def measure(model: Path, count: int, threads: int) -> dict[str, float | int]:
    names = [f"m{i + 1}" for i in range(count)]
    models = ",".join(f"{name}={model}" for name in names)
    proc, url, started_s = start_service(model, threads, {"BIONER_MODELS": models})
    ready_s = round(started_s, 2)
    try:
        after_start = rss_mb(proc.pid)
        for name in names:
            response = httpx.post(f"{url}/ner", json={"text": TEXT, "model": name}, timeout=60)
            response.raise_for_status()
            assert response.json()["model"]["name"] == name
        listed = httpx.get(f"{url}/models", timeout=10).json()
        assert [m["name"] for m in listed] == names
        after_requests = rss_mb(proc.pid)
        return {"models": count, "rss_mb_after_start": round(after_start, 1), "rss_mb": round(after_requests, 1), "ready_s": ready_s}
    finally:
        stop_service(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=0, help="BIONER_INTRA_OP_THREADS (0: one per core)")
    args = parser.parse_args()
    rows = [measure(args.model, n, args.threads) for n in args.counts]
    print(json.dumps({"cpu": cpu_model(), "bundle": str(args.model), "results": rows}, indent=2))
    base = rows[0]
    for row in rows:
        print(f"{row['models']} model(s): RSS {row['rss_mb']} MB ({row['rss_mb'] - base['rss_mb']:+.1f} MB), ready in {row['ready_s']} s")


if __name__ == "__main__":
    main()
